# syntax=docker/dockerfile:1
# Build stage: compile TypeScript to dist/ with the dev toolchain.
FROM node:24-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY bin/dist-stamp.js ./bin/
COPY scripts/build.ts ./scripts/
COPY src ./src
RUN npm run build

# Runtime stage: production dependencies only, non-root, Node 24 LTS.
FROM node:24-slim
ENV NODE_ENV=production SWITCHYARD_CONFIG=/etc/switchyard/switchyard.yaml
WORKDIR /app
COPY package.json package-lock.json ./
# the `node` devDependency (the runtime pin for npm scripts) is not installed here: the image is Node 24
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force
COPY --from=build /app/dist ./dist
COPY bin ./bin
COPY src/admin/web ./src/admin/web
# no built-in config: the demo's (loopback, demo targets, a published token) would start and route
# nowhere while the healthcheck said healthy. Without a mounted file the start fails at once, exit 2:
# "/etc/switchyard/switchyard.yaml: cannot read (ENOENT)" — mount one, or a ConfigMap (deploy/kubernetes)
# the file store writes beside the config's relative path (./data) or wherever store.path says;
# `switchyard` on PATH: `docker run IMAGE --help`, `docker exec … switchyard status` work as documented
RUN mkdir -p /app/data /var/lib/switchyard && chown node:node /app/data /var/lib/switchyard \
  && chmod 755 /app/bin/switchyard.js && ln -s /app/bin/switchyard.js /usr/local/bin/switchyard
USER node
# 8443: the TLS port (listen.tls), HTTPS and HTTP/2
EXPOSE 8080 8443 8081
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:8081/healthz').then(r => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
STOPSIGNAL SIGTERM
# the bin: its parsing, --help and exit codes; `serve` re-executes itself with the tuned V8 flags
# and glibc arenas (src/tuned-runtime.ts: 4 MB semi-spaces, an old generation that grows by half,
# MALLOC_ARENA_MAX=2; README Performance, "Memory by start path"); set any of them to override
ENTRYPOINT ["switchyard"]
CMD ["serve"]
