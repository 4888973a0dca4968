const Mocha = require('mocha')
// Mocha's spec reporter, plus the counts written to $MOCHA_RESULTS for scripts/test.mjs.
const {writeFileSync} = require('node:fs')

class CountingSpec extends Mocha.reporters.Spec {
  constructor(runner, options) {
    super(runner, options)
    runner.once(Mocha.Runner.constants.EVENT_RUN_END, () => {
      const {failures, passes, pending} = runner.stats
      if (process.env.MOCHA_RESULTS) {
        writeFileSync(process.env.MOCHA_RESULTS, JSON.stringify({failed: failures, passed: passes, pending}))
      }
    })
  }
}

module.exports = CountingSpec
