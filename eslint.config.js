// ESLint (flat config): JavaScript's and typescript-eslint's recommended rules over every TypeScript and
// script file; formatting is Prettier's job (npm run lint runs both, and clang-format for C++/CUDA).
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/**', 'build/**', 'build-*/**', 'docs/api/**', 'node_modules/**', '.kiln-demo/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: { globals: { console: 'readonly', process: 'readonly', performance: 'readonly' } },
    rules: {
      // tsc (noUnusedLocals/Parameters) already reports these, with the project's own exceptions
      '@typescript-eslint/no-unused-vars': 'off',
      // a `let` assigned once after closures that read it (server.ts's batcher) cannot be const
      'prefer-const': ['error', { ignoreReadBeforeAssign: true }],
    },
  },
);
