import { app } from "../../scripts/app.js";

window.widgetModuleEvaluated = true;
app.registerExtension({
  name: "loom.fixture.widgets",
  setup() { window.widgetSetupRan = true; },
  getCustomWidgets() { return { FIXTURE_WIDGET: () => ({}) }; },
});
