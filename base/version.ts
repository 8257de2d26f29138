/** frost's version, printed by `frost --version` and recorded in every manifest. */
export const VERSION = "0.1.0";
