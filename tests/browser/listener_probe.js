// A bare Firestore listener in the browser, for tests/browser/test_console.py: signs in as one developer and opens
// onSnapshot on a collection path, resolving with the documents it received or the error that refused it. Bundled by
// the test with the console's own esbuild and Firebase JS SDK (console/node_modules).
import { initializeApp } from "firebase/app";
import { connectAuthEmulator, getAuth, signInWithEmailAndPassword } from "firebase/auth";
import { collection, connectFirestoreEmulator, getFirestore, onSnapshot } from "firebase/firestore";

window.probeListener = async ({ projectId, authPort, firestorePort, email, password, path }) => {
  const app = initializeApp({ projectId, apiKey: "local-emulator" }, `probe-${Math.random()}`);
  const auth = getAuth(app);
  connectAuthEmulator(auth, `http://127.0.0.1:${authPort}`, { disableWarnings: true });
  const db = getFirestore(app);
  connectFirestoreEmulator(db, "127.0.0.1", firestorePort);
  await signInWithEmailAndPassword(auth, email, password);
  return new Promise((resolve) => {
    const unsubscribe = onSnapshot(
      collection(db, ...path.split("/")),
      (snapshot) => {
        unsubscribe();
        resolve({ ok: true, ids: snapshot.docs.map((d) => d.id) });
      },
      (error) => resolve({ ok: false, code: error.code }),
    );
  });
};
