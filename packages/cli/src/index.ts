export { defineWeightsCommands } from './commands/weights.js';
export { defineInfoCommand } from './commands/info.js';
