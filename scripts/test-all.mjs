#!/usr/bin/env node
// Runs every check and test suite of the project and prints one closing line
// `N passed, N failed` (CI reads that line). Each lint/format/type check counts as one test;
// each Rust and jest test counts as itself.
//
//   node scripts/test-all.mjs            everything
//   node scripts/test-all.mjs --only rust|jest|lint
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const root = new URL('..', import.meta.url).pathname;
const only = process.argv.includes('--only') ? process.argv[process.argv.indexOf('--only') + 1] : null;
const totals = { passed: 0, failed: 0, skipped: 0 };
const failures = [];

function run(cmd, args, opts = {}) {
  console.log(`\n$ ${cmd} ${args.join(' ')}`);
  const result = spawnSync(cmd, args, {
    cwd: root,
    encoding: 'utf8',
    stdio: opts.capture ? ['ignore', 'pipe', 'pipe'] : 'inherit',
    env: { ...process.env, ...opts.env },
    maxBuffer: 256 * 1024 * 1024,
  });
  if (opts.capture) {
    process.stdout.write(result.stdout ?? '');
    process.stderr.write(result.stderr ?? '');
  }
  return result;
}

function check(name, cmd, args) {
  const ok = run(cmd, args).status === 0;
  ok ? totals.passed++ : (totals.failed++, failures.push(name));
}

function rustTests() {
  // One release profile for tests and addons (see Cargo.toml); both ISA tiers: the detected
  // one, and the scalar reference forced through MISTRALRS_ISA.
  for (const isa of ['', 'scalar']) {
    const env = isa ? { MISTRALRS_ISA: isa } : {};
    const result = run('cargo', ['test', '--release', '--workspace'], { capture: true, env });
    const text = `${result.stdout}\n${result.stderr}`;
    let passed = 0;
    let failed = 0;
    let ignored = 0;
    for (const m of text.matchAll(/test result: \w+\. (\d+) passed; (\d+) failed; (\d+) ignored/g)) {
      passed += Number(m[1]);
      failed += Number(m[2]);
      ignored += Number(m[3]);
    }
    if (result.status !== 0 && failed === 0) {
      failed = 1; // a build failure or a crashed test binary
      failures.push(`cargo test${isa ? ` (MISTRALRS_ISA=${isa})` : ''}: exited ${result.status}`);
    } else if (failed > 0) {
      failures.push(`cargo test${isa ? ` (MISTRALRS_ISA=${isa})` : ''}: ${failed} failed`);
    }
    totals.passed += passed;
    totals.failed += failed;
    totals.skipped += ignored;
  }
}

function jestTests() {
  const out = join(mkdtempSync(join(tmpdir(), 'jest-')), 'results.json');
  const result = run(
    'node',
    ['--experimental-vm-modules', 'node_modules/jest/bin/jest.js', '--json', `--outputFile=${out}`],
    { env: { NODE_NO_WARNINGS: '1' } },
  );
  if (!existsSync(out)) {
    totals.failed++;
    failures.push(`jest: exited ${result.status} without results`);
    return;
  }
  const report = JSON.parse(readFileSync(out, 'utf8'));
  totals.passed += report.numPassedTests;
  totals.failed += report.numFailedTests;
  totals.skipped += report.numPendingTests + report.numTodoTests;
  // A suite that fails to load counts no tests but must not pass silently.
  const broken = report.testResults.filter((s) => s.status === 'failed' && s.assertionResults.length === 0);
  totals.failed += broken.length;
  for (const s of broken) failures.push(`jest suite failed to run: ${s.name}`);
  if (report.numFailedTests > 0) failures.push(`jest: ${report.numFailedTests} failed`);
}

function lint() {
  check('cargo fmt --check', 'cargo', ['fmt', '--all', '--check']);
  // Binding crates are cdylibs without tests: their #[napi] exports look unused to a test build.
  const bindings = ['mistralrs-quant-node', 'mistralrs-core-node'];
  const exclude = bindings.flatMap((b) => ['--exclude', b]);
  check('cargo clippy', 'cargo', ['clippy', '--release', '--workspace', ...exclude, '--all-targets', '--', '-D', 'warnings']);
  check('cargo clippy (bindings)', 'cargo', ['clippy', '--release', ...bindings.flatMap((b) => ['-p', b]), '--', '-D', 'warnings']);
  check('tsc (typecheck)', 'pnpm', ['typecheck']);
}

if (!only || only === 'lint') lint();
if (!only || only === 'rust') rustTests();
if (!only || only === 'jest') jestTests();

console.log('');
if (failures.length) console.log(`Failures:\n  ${failures.join('\n  ')}`);
const skipped = totals.skipped ? `, ${totals.skipped} skipped` : '';
console.log(`${totals.passed} passed, ${totals.failed} failed${skipped}`);
process.exit(totals.failed === 0 ? 0 : 1);
