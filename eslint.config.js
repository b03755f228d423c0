import js from '@eslint/js';
import tseslint from 'typescript-eslint';
import importX from 'eslint-plugin-import-x';

export default tseslint.config(
  // src/admin/web/ is browser JS with no build step; it is exercised by the Chromium test instead
  { ignores: ['dist/', 'node_modules/', 'test-output/', 'data/', '.tmp/', 'src/admin/web/'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: { parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname } },
    rules: {
      // node:test's describe/it return promises the runner itself awaits
      '@typescript-eslint/no-floating-promises': ['error', { allowForKnownSafeCalls: [{ from: 'package', package: 'node:test', name: ['describe', 'it', 'test', 'suite'] }] }],
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      '@typescript-eslint/consistent-type-imports': 'error',
    },
  },
  {
    // no circle between modules (README "Architecture"): import-x follows the imports that remain
    // at run time; `import type` is erased, so a circle of types alone is not reported
    plugins: { 'import-x': importX },
    // the dependencies are parsed as TypeScript; the default resolver finds them (imports name the .ts file)
    settings: { 'import-x/parsers': { '@typescript-eslint/parser': ['.ts'] }, 'import-x/extensions': ['.ts', '.js'] },
    // a circle closed by `await import()` alone is allowed: nothing of it runs while the modules
    // load (the entry's dispatch: main.ts hands a command to the CLI, whose `serve` runs main.ts)
    rules: { 'import-x/no-cycle': ['error', { allowUnsafeDynamicCyclicDependency: true }] },
  },
  {
    // the data plane's request shapes are typed (dataplane/types.ts): no double cast hides what is
    // really there (issue 30); internals without types go through a function that says so
    // (engine/internals.ts `slot`, `setSlot`)
    files: ['src/dataplane/**/*.ts'],
    rules: {
      'no-restricted-syntax': ['error', { selector: 'TSAsExpression[expression.type="TSAsExpression"][expression.typeAnnotation.type="TSUnknownKeyword"]', message: 'no `as unknown as` in the data plane: type the shape (dataplane/types.ts) or read an internal slot with engine/internals.ts slot()' }],
    },
  },
  {
    files: ['**/*.js'],
    extends: [tseslint.configs.disableTypeChecked],
  },
);
