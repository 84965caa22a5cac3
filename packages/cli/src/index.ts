export { parseConfig } from './commands/render.js';
export { registerWeightsCommands } from './commands/weights.js';
