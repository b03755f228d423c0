/**
 * The commands `npm run demo` prints, in the order to try them: one list, so the README's Quick
 * start and test/e2e/demo.test.ts (which runs every line, in order, against the demo) agree.
 * `proxy` and `admin` are the URLs the demo listens on.
 */
export function demoLines(proxy: string, admin: string, token: string): string[] {
  return [
    `export SWITCHYARD_ADMIN_URL=${admin} SWITCHYARD_TOKEN=${token}`,
    `curl -s ${proxy}/                                   # hello from blue 1.0.0`,
    'npx switchyard status shop',
    '',
    '# canary: 10 % of users, sticky per user',
    'npx switchyard weights shop blue=90 green=10 --reason "canary 2.0.0"',
    `for i in $(seq 1 20); do curl -s -H "x-user-id: user-$i" ${proxy}/; done`,
    'npx switchyard whereis shop user-7',
    '',
    '# preview green before it gets traffic',
    `curl -s -H "$(npx switchyard preview-header shop green)" ${proxy}/`,
    '',
    '# switch; blue drains once its affinity window (5s in this config) has passed',
    'npx switchyard switch shop green --reason "release 2.0.0"',
    `curl -s ${proxy}/                                   # hello from green 2.0.0`,
    'npx switchyard drain shop blue --wait --timeout 1m',
    '',
    '# roll back: to the last stable routing (blue at 100 %); --dry-run shows it first',
    'npx switchyard rollback shop --dry-run',
    'npx switchyard rollback shop --reason "trying it"',
    'npx switchyard history shop',
    '',
    '# the same switch over HTTP',
    `curl -s -X POST -H "authorization: Bearer ${token}" -H 'content-type: application/json' \\`,
    `     -d '{"to":"green","reason":"release"}' ${admin}/v1/apps/shop/switch`,
  ];
}
