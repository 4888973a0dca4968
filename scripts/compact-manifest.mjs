#!/usr/bin/env node
// Rewrites oclif.manifest.json without the indentation `oclif manifest` gives it. A host CLI reads
// and parses every installed plugin's manifest before each of its own commands, ours included:
// the same JSON, a fifth smaller (41 KB -> 33 KB).
import {readFileSync, writeFileSync} from 'node:fs'
import {dirname, join} from 'node:path'
import {fileURLToPath} from 'node:url'

const file = join(dirname(fileURLToPath(import.meta.url)), '..', 'oclif.manifest.json')
writeFileSync(file, JSON.stringify(JSON.parse(readFileSync(file, 'utf8'))) + '\n')
