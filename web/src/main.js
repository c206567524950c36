// Entry point of the bundled editor.
import "@comfyorg/litegraph/style.css";
import "./style.css";
import { LoomApp } from "./app.js";

new LoomApp().start().catch((err) => {
  console.error(err);
  document.body.dataset.ready = "error";
});
