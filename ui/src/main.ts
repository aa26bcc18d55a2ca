import { mount } from "svelte";
import App from "./App.svelte";
import "./app.css";
import { startLanguage } from "./lib/i18n";

const target = document.getElementById("app");
if (!target) throw new Error("index.html has no #app element");

// The saved language is applied before the first draw, so no text flips.
void startLanguage().finally(() => mount(App, { target }));
