// Firebase for the console: Auth (e-mail and password) and Firestore (the live payments table).
// Served from localhost it talks to the local stack's emulators, whose ports the build took from firebase.json;
// anywhere else it reads the project's web config from Hosting's reserved /__/firebase/init.json.
import { initializeApp } from "firebase/app";
import { browserLocalPersistence, connectAuthEmulator, initializeAuth } from "firebase/auth";
import { connectFirestoreEmulator, getFirestore } from "firebase/firestore";

/* global __LOCAL_STACK__ */
const LOCAL_STACK = __LOCAL_STACK__;
const LOCAL_HOSTS = new Set(["localhost", "127.0.0.1", "[::1]"]);
export const isLocalStack = LOCAL_HOSTS.has(location.hostname);

async function webConfig() {
  if (isLocalStack) {
    // The Auth emulator accepts any API key; this one is not a credential of any project.
    return { projectId: LOCAL_STACK.projectId, apiKey: "local-emulator", authDomain: "127.0.0.1" };
  }
  const response = await fetch("/__/firebase/init.json");
  if (!response.ok) throw new Error(`cannot load the Firebase web config (HTTP ${response.status})`);
  return response.json();
}

export async function startFirebase() {
  const app = initializeApp(await webConfig());
  const auth = initializeAuth(app, { persistence: browserLocalPersistence });
  const db = getFirestore(app);
  if (isLocalStack) {
    // 127.0.0.1, not the page's host name: the emulators listen on IPv4 only and "localhost" may resolve to ::1.
    connectAuthEmulator(auth, `http://127.0.0.1:${LOCAL_STACK.authPort}`, { disableWarnings: true });
    connectFirestoreEmulator(db, "127.0.0.1", LOCAL_STACK.firestorePort);
  }
  return { app, auth, db };
}
