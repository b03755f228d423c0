// The data plane imports undici's Pool class alone (see dataplane/runtime.ts); its types are
// the package's own.
declare module 'undici/lib/dispatcher/pool.js' {
  import type { Pool } from 'undici';
  const PoolClass: typeof Pool;
  export default PoolClass;
}

