// QMP errors. An execute error carries QEMU's error class (GenericError, DeviceNotFound, ...):
// callers branch on the class, never on the human-readable desc.
import { StrataError } from '../errors.ts';

export class QmpError extends StrataError {}

/** QEMU refused a command: its class and words, and the exact lines sent and received. */
export class QmpExecuteError extends QmpError {
  readonly errorClass: string;
  readonly desc: string;
  readonly command: string;
  /** the command line as sent (JSON, without the newline) */
  readonly sent: string;
  /** QEMU's reply line as received */
  readonly received: string;
  constructor(command: string, errorClass: string, desc: string, wire: { sent: string; received: string }) {
    super('E_QMP_EXECUTE', `QMP ${command} failed: ${errorClass}: ${desc}`);
    this.errorClass = errorClass;
    this.desc = desc;
    this.command = command;
    this.sent = wire.sent;
    this.received = wire.received;
  }
}

export const qmpError = {
  connect: (where: string, why: string, cause?: unknown) => new QmpError('E_QMP_CONNECT', `${where}: cannot connect to the QMP monitor: ${why}`, { file: where, cause }),
  negotiation: (where: string, why: string) => new QmpError('E_QMP_NEGOTIATION', `${where}: QMP negotiation failed: ${why}`, { file: where }),
  interrupted: (where: string, command: string, why: string) =>
    new QmpError('E_QMP_INTERRUPTED', `${where}: connection lost while ${command} was pending: ${why}`, { file: where }),
  state: (where: string, command: string, state: string) => new QmpError('E_QMP_STATE', `${where}: QMP ${command}: the connection is ${state}`, { file: where }),
  protocol: (where: string, why: string) => new QmpError('E_QMP_PROTOCOL', `${where}: QMP protocol error: ${why}`, { file: where }),
  timeout: (where: string, command: string, ms: number) => new QmpError('E_QMP_TIMEOUT', `${where}: QMP ${command} got no reply within ${ms} ms`, { file: where }),
};
