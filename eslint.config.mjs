import oclif from 'eslint-config-oclif'

export default [
  {ignores: ['dist/', 'build/', 'prebuilds/', 'coverage/', '.nyc_output/', '.criu/', 'examples/mycli/node_modules/', 'tmp/']},
  ...oclif,
  {
    rules: {
      // Tests and scripts run real processes; sequential awaits in loops are deliberate there.
      'no-await-in-loop': 'off',
      // Node 20 is the target: these "prefer" newer APIs than it has, or fight CommonJS output.
      'unicorn/prefer-top-level-await': 'off',
      'unicorn/prefer-module': 'off',
      'n/no-process-exit': 'off',
      'unicorn/no-process-exit': 'off',
      'perfectionist/sort-objects': 'off',
      'perfectionist/sort-object-types': 'off',
      'perfectionist/sort-interfaces': 'off',
      'perfectionist/sort-classes': 'off',
      'perfectionist/sort-union-types': 'off',
      'perfectionist/sort-named-imports': 'off',
      'perfectionist/sort-modules': 'off',
      'mocha/no-top-level-hooks': 'off',
      'mocha/no-setup-in-describe': 'off',
      'unicorn/prefer-string-raw': 'off',
      'no-bitwise': 'off',
      'perfectionist/sort-switch-case': 'off',
      '@stylistic/object-curly-newline': 'off',
      // Help texts and messages are long sentences; code lines stay short.
      '@stylistic/max-len': ['warn', {
        code: 160, ignoreStrings: true, ignoreTemplateLiterals: true, ignoreComments: true,
      }],
    },
  },
  {
    files: ['**/*.js', '**/*.cjs'],
    rules: {'@typescript-eslint/no-require-imports': 'off'},
  },
  {
    files: ['test/**/*.ts'],
    rules: {'import/no-named-as-default-member': 'off', 'max-nested-callbacks': 'off'},
  },
]
