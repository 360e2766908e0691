/** The appliance's version, shown by `edge-time version` and in `/status`. */
export const VERSION = "0.1.0";
