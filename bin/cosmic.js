#!/usr/bin/env node
// onnxruntime walks the process's command line (/proc/self/cmdline) recursively when it creates
// its first session, one stack frame per byte: past ~29 KB of arguments the main thread's
// 8 MiB stack overflows (SIGSEGV). A long command line is therefore handed to a child process
// over IPC, so that the process running the engine has a short one.
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";

const ARGV_LIMIT = 8192;
const self = fileURLToPath(import.meta.url);
const bytes = process.argv.reduce((n, a) => n + Buffer.byteLength(a) + 1, 0);

if (process.env.COSMIC_ARGV_IPC === "1" && process.send) {
  // The child: wait for the real arguments, then run.
  process.once("message", async (argv) => {
    setImmediate(() => process.disconnect());
    const { main } = await import("../dist/src/cli/main.js");
    main(argv).then((code) => {
      process.exitCode = code;
    });
  });
} else if (bytes > ARGV_LIMIT) {
  const child = spawn(process.execPath, [...process.execArgv, self], {
    stdio: ["inherit", "inherit", "inherit", "ipc"],
    env: { ...process.env, COSMIC_ARGV_IPC: "1" },
  });
  child.send(process.argv);
  // The child gets Ctrl-C from the terminal itself; forward a kill.
  const forward = (sig) => () => child.kill(sig);
  process.on("SIGINT", () => {});
  process.on("SIGTERM", forward("SIGTERM"));
  child.on("exit", (code, signal) => {
    process.exitCode = code ?? (signal ? 128 + (signal === "SIGINT" ? 2 : signal === "SIGTERM" ? 15 : 9) : 1);
  });
} else {
  const { main } = await import("../dist/src/cli/main.js");
  main(process.argv).then((code) => {
    process.exitCode = code;
  });
}
