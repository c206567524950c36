import { app } from "../../scripts/app.js";
app.registerExtension({ name: "fixtures.good_pack" });
