import js from '@eslint/js';
import tseslint from 'typescript-eslint';

/** Files matching `files` may import `forbidden` modules for their types only. */
function layer(files, forbidden) {
  return [
    {
      files: [files],
      rules: {
        '@typescript-eslint/no-restricted-imports': [
          'error',
          {
            patterns: [
              {
                group: forbidden,
                allowTypeImports: true,
                message:
                  'This layer may not depend on that one (types excepted): see the README layout.',
              },
            ],
          },
        ],
      },
    },
  ];
}

export default tseslint.config(
  {
    ignores: [
      'dist/**',
      'node_modules/**',
      'examples/otel-collector/**',
      '**/*.mjs',
      '**/*.cjs',
      '**/*.js',
    ],
  },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/consistent-type-imports': 'error',
      '@typescript-eslint/no-unused-vars': [
        'error',
        { argsIgnorePattern: '^_', varsIgnorePattern: '^_' },
      ],
    },
  },
  // The layout, enforced: the pool hands out resources, the lease-watching core (src/watch) finds
  // leaks and publishes events, adapters feed other libraries' pools into the core, and only
  // src/instrumentation knows OpenTelemetry (see README, "How the code is laid out").
  ...layer('src/watch/**/*.ts', [
    '../pool',
    '../drivers/*',
    '../adapters/*',
    '../instrumentation/*',
    '../leak-tracker',
  ]),
  ...layer('src/{pool,waiters}.ts', ['./drivers/*', './adapters/*', './instrumentation/*']),
  ...layer('src/adapters/**/*.ts', ['../pool', '../drivers/*', '../instrumentation/*']),
  ...layer('src/drivers/**/*.ts', ['../adapters/*', '../instrumentation/*']),
  {
    files: ['test/**/*.ts', 'bench/**/*.ts'],
    rules: {
      '@typescript-eslint/no-non-null-assertion': 'off',
      '@typescript-eslint/no-explicit-any': 'off',
    },
  },
);
