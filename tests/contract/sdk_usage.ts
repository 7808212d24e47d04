// A small consumer of the generated TypeScript types (build/sdk/typescript/charter.d.ts, from
// `make sdk`): the README's flow written against them. tests/contract/test_sdk.py runs
// `tsc --noEmit` on it; every `@ts-expect-error` line must stay an error, or the types have
// gone loose (an enum became a string, a required field optional, an operation vanished).
import type { components, operations, paths } from "../../build/sdk/typescript/charter";

type Schemas = components["schemas"];
export type Task = Schemas["Task"];
export type Problem = Schemas["Problem"];
type TasksPath = paths["/api/v1/users/{user_id}/tasks"];
type NewTask = TasksPath["post"]["requestBody"]["content"]["application/json"];
type TaskPage = operations["listTasks"]["responses"][200]["content"]["application/json"];
type Tokens = operations["login"]["responses"][200]["content"]["application/json"];
type Me = operations["getCurrentUser"]["responses"][200]["content"]["application/json"];

/** A failed call: the RFC 9457 problem the server answered. */
export class ApiProblem extends Error {
  constructor(readonly problem: Problem) {
    super(`${problem.status} ${problem.type}: ${problem.detail ?? problem.title}`);
  }
}

async function call<T>(base: string, path: string, init: RequestInit & { token?: string } = {}): Promise<T> {
  const headers = new Headers(init.headers);
  if (init.token) headers.set("Authorization", `Bearer ${init.token}`);
  if (init.body) headers.set("Content-Type", "application/json");
  const response = await fetch(base + path, { ...init, headers });
  if (response.headers.get("Content-Type")?.startsWith("application/problem+json")) {
    throw new ApiProblem((await response.json()) as Problem);
  }
  return (response.status === 204 ? undefined : await response.json()) as T;
}

/** Register, log in, create a task, list, complete and delete it, log out. */
export async function readmeFlow(base: string, email: string, password: string): Promise<Task> {
  const register: Schemas["RegisterRequest"] = { email, password, display_name: "Ada Lovelace" };
  await call<Me>(base, "/api/v1/auth/register", { method: "POST", body: JSON.stringify(register) });
  const login: Schemas["LoginRequest"] = { email, password };
  const tokens = await call<Tokens>(base, "/api/v1/auth/login", { method: "POST", body: JSON.stringify(login) });
  const token: string = tokens.access_token;
  const me = await call<Me>(base, "/api/v1/auth/me", { token });
  const tasks = `/api/v1/users/${me.id}/tasks`;
  const draft: NewTask = { title: "Write the report", priority: "high", due_at: "2026-12-01T17:00:00Z", tags: ["work"] };
  const task = await call<Task>(base, tasks, { method: "POST", token, body: JSON.stringify(draft) });
  const page = await call<TaskPage>(base, `${tasks}?limit=10`, { token });
  const next: string | null = page.next_cursor;
  const done = await call<Task>(base, `${tasks}/${task.id}/complete`, { method: "PATCH", token });
  const completedAt: string | null = done.completed_at;
  await call<void>(base, `${tasks}/${task.id}`, { method: "DELETE", token });
  await call<void>(base, "/api/v1/auth/logout", { method: "POST", token });
  console.log(next, completedAt);
  return done;
}

// The types are as strict as the contract:
// @ts-expect-error `priority` is one of low, medium, high, urgent
export const wrongPriority: NewTask = { title: "x", priority: "someday" };
// @ts-expect-error `title` is required
export const noTitle: NewTask = { priority: "low" };
// @ts-expect-error a task's `version` is an integer
export const versionIsNumber: Task["version"] = "3";
// @ts-expect-error there is no such operation
export type Missing = operations["deleteEverything"];
// A problem's `type` is what clients switch on.
export const problemType = (problem: Problem): string => problem.type;
