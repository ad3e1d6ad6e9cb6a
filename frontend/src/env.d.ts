/// <reference types="vite/client" />

interface ImportMetaEnv {
  /** The API's origin when it is not the SPA's own (it normally is: "" then). */
  readonly VITE_API_URL?: string;
}
