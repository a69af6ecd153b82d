// Build step: what ships beside the compiled JavaScript without being compiled: the Lua scripts
// (dist/lua) and the operator console's page and assets (dist/console/assets).
import { cpSync, mkdirSync } from 'node:fs'

for (const folder of ['lua/', 'console/assets/']) {
  const to = new URL('../dist/' + folder, import.meta.url)
  mkdirSync(to, { recursive: true })
  cpSync(new URL('../lib/' + folder, import.meta.url), to, { recursive: true })
}
