import { test } from "node:test";
import assert from "node:assert/strict";
import os from "node:os";
import { describeMachine, parseCpuinfo } from "../src/util/machine.js";

// Two processors of a Zen 5 EPYC as Linux lists them (flags shortened).
const ZEN5 = [
  "processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 26\nmodel\t\t: 2\nmodel name\t: AMD EPYC\n" +
    "flags\t\t: fpu sse2 avx avx2 avx512f avx512bw\n",
  "processor\t: 1\nvendor_id\t: AuthenticAMD\ncpu family\t: 26\nmodel\t\t: 2\nmodel name\t: AMD EPYC\n" +
    "flags\t\t: fpu sse2 avx avx2 avx512f avx512bw\n",
].join("\n");

test("machine: /proc/cpuinfo's generation fields are read from its first processor", () => {
  const c = parseCpuinfo(ZEN5);
  assert.equal(c.model, "AMD EPYC");
  assert.equal(c.family, "26");
  assert.equal(c.modelNumber, "2");
  assert.ok(c.flags.has("avx512f") && !c.flags.has("avx512_bf16"));
});

test("machine: one line names the CPU, its generation, its widest SIMD, the CPUs and the memory", () => {
  const gib = (os.totalmem() / 2 ** 30).toFixed(1);
  const n = os.cpus().length;
  assert.equal(describeMachine(ZEN5), `AMD EPYC (family 26, model 2; AVX-512), ${n} CPUs, ${gib} GiB`);
  const avx2 = "cpu family\t: 25\nmodel\t\t: 1\nmodel name\t: AMD EPYC 7763\nflags\t\t: avx avx2\n";
  assert.equal(describeMachine(avx2), `AMD EPYC 7763 (family 25, model 1; AVX2), ${n} CPUs, ${gib} GiB`);
  // Without /proc/cpuinfo (not Linux), Node's own name for the CPU.
  assert.equal(describeMachine(null), `${os.cpus()[0]?.model ?? os.arch()}, ${n} CPUs, ${gib} GiB`);
});
