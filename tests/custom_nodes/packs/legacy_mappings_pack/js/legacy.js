// served at /extensions/legacy_mappings_pack/legacy.js: the pack registers this folder in nodes.EXTENSION_WEB_DIRS
export const legacy = true;
