// Builds the console into dist/, the folder firebase.json's "hosting"."public" serves: src/main.js and the Firebase
// JS SDK it imports are bundled by esbuild into one file, and static/ is copied beside it. No CDN: the bundle works
// offline. The local stack's emulator ports and project id come from firebase.json and .firebaserc (their one
// source); the bundle uses them only when the page is served from localhost.
import { build } from "esbuild";
import { cpSync, mkdirSync, readFileSync, rmSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, "..");
const firebase = JSON.parse(readFileSync(join(root, "firebase.json"), "utf8"));
const firebaserc = JSON.parse(readFileSync(join(root, ".firebaserc"), "utf8"));
const localStack = {
  projectId: firebaserc.projects.default,
  authPort: firebase.emulators.auth.port,
  firestorePort: firebase.emulators.firestore.port,
};

const dist = join(here, "dist");
rmSync(dist, { recursive: true, force: true });
mkdirSync(dist, { recursive: true });
cpSync(join(here, "static"), dist, { recursive: true });
const result = await build({
  entryPoints: [join(here, "src", "main.js")],
  outfile: join(dist, "app.js"),
  bundle: true,
  format: "esm",
  minify: true,
  target: "es2020",
  legalComments: "none",
  metafile: true,
  logLevel: "warning",
  define: { __LOCAL_STACK__: JSON.stringify(localStack) },
});
const bytes = Object.values(result.metafile.outputs).reduce((sum, output) => sum + output.bytes, 0);
console.log(`console built into console/dist (app.js ${(bytes / 1024).toFixed(0)} KiB)`);
