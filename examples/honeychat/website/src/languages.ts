// The languages the site is published in: one directory per language.
export const languages = [
  { code: "en", name: "English", greeting: "Chat with HoneyChat" },
  { code: "fr", name: "Français", greeting: "Discutez avec HoneyChat" },
  { code: "de", name: "Deutsch", greeting: "Chatte mit HoneyChat" },
  { code: "es", name: "Español", greeting: "Habla con HoneyChat" },
];
