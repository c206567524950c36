// A pack module without an extension, imported by menu.js (and listed by /extensions itself).
export const LABEL = "Fixture: count nodes";
