// Renderer entry: Pinia, the transport (chosen once), the event bridge, then the first reads.
import { createApp } from 'vue';
import { createPinia } from 'pinia';
import App from './app.vue';
import { getTransport } from './api/client';
import { startEventBridge } from './event-bridge';
import { useConnectionStore } from './stores/connection';
import { useWorkspaceStore } from './stores/workspace';
import { useQemuConnectionsStore } from './stores/qemu-connections';
import { useJobsStore } from './stores/jobs';
import { usePlansStore } from './stores/plans';
import './styles/app.css';

const app = createApp(App);
app.use(createPinia());

startEventBridge(getTransport());
// Requests made before the WebSocket opens wait in its queue, so these need no ordering.
void useConnectionStore().loadAppInfo();
void useWorkspaceStore().load();
void useQemuConnectionsStore().load();
void useJobsStore().load();
void usePlansStore().load();

app.mount('#app');
