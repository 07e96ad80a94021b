/**
 * Entry module of a native-backend worker thread: serves every registered task.
 *
 * @module
 */
import { workerData } from "node:worker_threads";
import { serveTasks, type WorkerData } from "../../src/backend/thread_pool.ts";
import { TASKS } from "./tasks.ts";

serveTasks(workerData as WorkerData, TASKS);
