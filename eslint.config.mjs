import neostandard from 'neostandard'

export default [
  ...neostandard({
    ts: true,
    ignores: ['dist/**', 'coverage/**', '.tap/**', 'node_modules/**']
  }),
  {
    // The operator console's page runs in the browser.
    files: ['lib/console/assets/**/*.js'],
    languageOptions: {
      globals: { document: 'readonly', window: 'readonly', location: 'readonly', history: 'readonly', Node: 'readonly', HTMLElement: 'readonly' }
    }
  }
]
