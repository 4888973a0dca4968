#!/usr/bin/env node
// Development entry: runs src/ through tsx when it is installed (NODE_ENV=development makes
// oclif look for TypeScript sources), otherwise the compiled dist/.
const {execute} = require('@oclif/core')

execute({development: true, dir: __dirname})
