// Build step: the Lua scripts ship beside the compiled JavaScript (dist/lua).
import { cpSync, mkdirSync } from 'node:fs'

const from = new URL('../lib/lua/', import.meta.url)
const to = new URL('../dist/lua/', import.meta.url)
mkdirSync(to, { recursive: true })
cpSync(from, to, { recursive: true })
