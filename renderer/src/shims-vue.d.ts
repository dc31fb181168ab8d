// Lets tsc see .vue imports (vue-tsc is not installed; Vite compiles the SFCs).
declare module '*.vue' {
  import type { DefineComponent } from 'vue';
  const component: DefineComponent<object, object, unknown>;
  export default component;
}
