#!/usr/bin/env node
// The plugin on its own, as `mycli`: what a host CLI would run.
const {execute} = require('@oclif/core')

execute({dir: __dirname})
