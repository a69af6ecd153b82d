// Every test file covers the built plugin as a whole.
export default () => ['dist/**/*.js']
