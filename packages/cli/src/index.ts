export { defineWeightsCommands } from './commands/weights.js';
