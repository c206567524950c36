import { app } from "../../scripts/app.js";
import { $el } from "../../scripts/ui.js";

app.registerExtension({ name: "loom.fixture.ui", setup() { window.uiExtensionRan = $el; } });
