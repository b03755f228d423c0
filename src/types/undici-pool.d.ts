// The data plane imports undici's Pool class alone (see dataplane/runtime.ts); its types are
// the package's own.
declare module 'undici/lib/dispatcher/pool.js' {
  import type { Pool } from 'undici';
  const PoolClass: typeof Pool;
  export default PoolClass;
}

// the TLS connector alone, for the https targets' server name (dataplane/engine/tls-name.ts)
declare module 'undici/lib/core/connect.js' {
  import type { buildConnector } from 'undici';
  const build: typeof buildConnector;
  export default build;
}
