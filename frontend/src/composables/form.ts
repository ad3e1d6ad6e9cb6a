// One shape for every form: field errors next to their fields, everything else in the form's alert
// region, focus on the first error after a failed submit, and a busy flag against double submits.
import { nextTick, reactive, ref } from "vue";

import { ApiError, describe } from "@/api/problem";

export interface Notice {
  title: string;
  detail: string;
  /** Field errors the form shows no field for ("non_field_errors", nested names). */
  extra: string[];
}

export function useForm<F extends string>(fields: readonly F[]) {
  const errors = reactive({}) as Partial<Record<F, string>>;
  const alert = ref<Notice | null>(null);
  const busy = ref(false);

  function clear(): void {
    for (const key of Object.keys(errors)) delete errors[key as F];
    alert.value = null;
  }

  function show(error: unknown): void {
    clear();
    const extra: string[] = [];
    if (error instanceof ApiError && error.fieldErrors.length) {
      for (const { field, message } of error.fieldErrors) {
        if ((fields as readonly string[]).includes(field)) {
          errors[field as F] ??= message;
        } else {
          extra.push(field === "non_field_errors" ? message : `${field}: ${message}`);
        }
      }
      if (extra.length === 0) {
        const count = error.fieldErrors.length;
        alert.value = { title: "Please correct the form", detail: `${count} field${count === 1 ? " needs" : "s need"} attention.`, extra };
        return;
      }
    }
    alert.value = { ...describe(error), extra };
  }

  /** Move focus to the first field in error, else to the alert (the form's `[data-alert]`). */
  async function focusError(form: Element | null): Promise<void> {
    await nextTick();
    const target =
      form?.querySelector<HTMLElement>('[aria-invalid="true"]') ?? form?.querySelector<HTMLElement>("[data-alert]");
    target?.focus();
  }

  /** Run `action` for a submit event; on failure show and focus the errors and answer false. */
  async function submit(event: Event, action: () => Promise<void>): Promise<boolean> {
    if (busy.value) return false;
    const form = event.currentTarget instanceof Element ? event.currentTarget : null;
    clear();
    busy.value = true;
    try {
      await action();
      return true;
    } catch (error) {
      show(error);
      await focusError(form);
      return false;
    } finally {
      busy.value = false;
    }
  }

  return { errors, alert, busy, clear, show, submit };
}
