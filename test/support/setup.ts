// Loaded by mocha before any test (see .mocharc.json).
import {settings} from '@oclif/core'

// Tests load the compiled commands in dist/, never TypeScript sources through a transpiler.
settings.enableAutoTranspile = false
