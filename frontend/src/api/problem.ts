import type { FieldError, Problem } from "./types";

/** An error answer of the API (RFC 9457 problem details), or a failure to reach it, as one type. */
export class ApiError extends Error {
  readonly problem: Problem;

  constructor(problem: Problem) {
    super(problem.detail || problem.title);
    this.name = "ApiError";
    this.problem = problem;
  }

  get status(): number {
    return this.problem.status;
  }

  get code(): string {
    return this.problem.code;
  }

  get fieldErrors(): FieldError[] {
    return this.problem.errors ?? [];
  }
}

function isProblem(value: unknown): value is Problem {
  return (
    typeof value === "object" &&
    value !== null &&
    typeof (value as Problem).title === "string" &&
    typeof (value as Problem).status === "number"
  );
}

/** The problem of an error answer; a body that is not problem+json (a proxy's HTML page) gets a generic one. */
export function problemOf(body: unknown, response: Response): ApiError {
  if (isProblem(body)) {
    return new ApiError({ ...body, code: body.code ?? "error" });
  }
  const retry = response.headers.get("Retry-After");
  return new ApiError({
    type: "about:blank",
    title: response.status >= 500 ? "The service is not available" : "Request failed",
    status: response.status,
    detail:
      response.status >= 500
        ? `Please try again${retry ? ` in ${retry} seconds` : " in a moment"}.`
        : `The server answered ${response.status}.`,
    code: "http_error",
  });
}

export function networkError(): ApiError {
  return new ApiError({
    type: "about:blank",
    title: "No connection",
    status: 0,
    detail: "The service could not be reached. Check your connection and try again.",
    code: "network_error",
  });
}

/** A title and a sentence for a person, whatever failed (the API, the network, the passkey prompt). */
export function describe(error: unknown): { title: string; detail: string } {
  if (error instanceof ApiError) {
    return { title: error.problem.title, detail: error.problem.detail ?? "" };
  }
  if (error instanceof DOMException && error.name === "NotAllowedError") {
    return { title: "Passkey cancelled", detail: "The passkey prompt was closed or timed out." };
  }
  return { title: "Something went wrong", detail: error instanceof Error ? error.message : String(error) };
}
