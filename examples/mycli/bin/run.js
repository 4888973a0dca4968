#!/usr/bin/env node
const {execute} = require('@oclif/core')

execute({dir: __dirname})
