/**
 * The agent's Service component: reads the services file and converges a data plane (bpf,
 * iptables…) to it on every daemon sync, and asks for a sync when the file changes.
 * @module
 */
import type { Component, ComponentSyncResult } from "../daemon.ts";
import type { Dataplane } from "../dataplane.ts";
import { readServiceFile, type ServiceFileWatch, watchServiceFile } from "./service_file.ts";

/** A daemon Component over one data plane and one services file. */
export class ServiceComponent implements Component {
  readonly name = "services";
  #watch: ServiceFileWatch | undefined;

  constructor(readonly dataplane: Dataplane, readonly file: string) {}

  async sync(): Promise<ComponentSyncResult> {
    const snapshot = await readServiceFile(this.file);
    const report = await this.dataplane.sync(snapshot);
    return {
      operations: report.operations,
      detail: {
        dataplane: this.dataplane.kind,
        services: snapshot.services.length,
        changedServices: report.changedServices,
        durationMs: Math.round(report.durationMs * 1000) / 1000,
      },
    };
  }

  watch(trigger: () => void): void {
    this.#watch ??= watchServiceFile(this.file, trigger);
  }

  /** Stops watching and closes the data plane's handles; its kernel state stays. */
  async close(): Promise<void> {
    this.#watch?.close();
    this.#watch = undefined;
    await this.dataplane.close();
  }
}
