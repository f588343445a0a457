/**
 * The project checkout this agent runs from: where build/, node_modules/ and cli/ are.
 * @module
 */

/** Absolute path of the checkout, without a trailing slash. */
export const PROJECT_ROOT: string = new URL("../", import.meta.url).pathname.replace(/\/$/, "");
