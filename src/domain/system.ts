/** Fixed names of the data: the system user that owns automatic work, and the default DC. */
export const SYSTEM_USER_ID = 7;
export const SYSTEM_USERNAME = '_system';
export const DEFAULT_DC = 'main';
