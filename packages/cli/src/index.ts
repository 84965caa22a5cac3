export { registerWeightsCommands } from './commands/weights.js';
