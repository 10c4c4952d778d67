// A channel team's use of the types openapi-typescript generates from each listener's served
// /openapi.json (tests/outside_tools.rs writes them into generated/). It is compiled with
// `tsc --strict`, never run: it fails to compile if the contract stops generating usable types.
import type { components, paths } from "./generated/public";
import type { components as admin } from "./generated/admin";

type DecideRequest = components["schemas"]["DecideRequest"];
type Decision = paths["/v1/decide"]["post"]["responses"][200]["content"]["application/json"];
type Verdict = components["schemas"]["Verdict"];
type EventBatch = paths["/v1/events"]["post"]["requestBody"]["content"]["application/json"];
type EventsAccepted = paths["/v1/events"]["post"]["responses"][202]["content"]["application/json"];
type ApiError = paths["/v1/decide"]["post"]["responses"][400]["content"]["application/json"];
type TooLarge = paths["/v1/decide"]["post"]["responses"][431]["content"]["application/json"];
type ModelDocument = admin["schemas"]["ModelDocument"];

// `explain`, `limit` and `context` are optional: the smallest request compiles.
export const ask: DecideRequest = { channel: "web", placement: "plans_page" };
export const full: DecideRequest = {
  customer_id: "C0000042",
  channel: "web",
  placement: "plans_page",
  limit: 3,
  context: { page: "plans", cart_value: 250 },
  explain: true,
};

/** What a page shows, and what it logs. */
export function render(d: Decision): string[] {
  const f = d.fallback;
  if (f !== null) {
    switch (f.reason) {
      case "unknown_placement":
        for (const w of d.warnings ?? []) console.warn(w);
        break;
      case "deadline":
      case "overload":
      case "no_model":
        console.info(`fallback ${f.reason} from ${f.stage}`);
        break;
      case "unknown_customer":
      case "no_eligible_offer":
        break;
    }
  }
  const titles: string[] = [];
  for (const o of d.offers) {
    if (o.content !== null) titles.push(`${o.rank}. ${o.content.title}`);
  }
  return titles;
}

/** Explain is a union that narrows. */
export function why(v: Verdict): string {
  return "excluded" in v ? `${v.offer_id}: ${v.excluded}` : `${v.offer_id}: ${v.score.toFixed(2)}`;
}

export function explainAll(d: Decision): string[] {
  return (d.explain ?? []).map(why);
}

// Zoned times, as Date#toISOString and any offset write them.
export const batch: EventBatch = {
  events: [
    {
      type: "impression",
      customer_id: "C0000042",
      offer_id: "data_boost_10gb",
      decision_id: "01JDAQ6F0ZP6K1V4X9M3B2C8RT",
      ts: new Date().toISOString(),
    },
    { type: "complaint", customer_id: "C0000042", ts: "2026-11-22T11:00:00+01:00" },
  ],
};

/** Every event is accounted for. */
export function accounted(a: EventsAccepted, sent: number): boolean {
  const warned = (a.warnings ?? []).map((w) => w.index);
  return a.accepted + a.duplicates + a.rejected.length === sent && warned.every((i) => i < sent);
}

export function describe(e: ApiError | TooLarge): string {
  return `${e.error}: ${e.detail}`;
}

// The model document an operator uploads with PUT /admin/models.
export const model: ModelDocument = {
  name: "spring",
  version: "4",
  placements: { home_hero: { channels: ["web"], limit: 1 } },
  offers: [
    {
      id: "data_boost_10gb",
      category: "sales",
      channels: ["web"],
      placements: ["home_hero"],
      value: 10,
      valid_from: "2026-01-01T00:00:00+01:00",
      eligibility: {
        all: [
          { feature: "data_gb_30d", op: "ge", value: 8 },
          { any: [{ context: "page", op: "in", values: ["plans", "home"] }] },
        ],
      },
      scorer: { kind: "logistic", intercept: -3.2, weights: { data_gb_30d: 0.06 } },
      content: {
        web: { title: "+10 GB", image_url: "https://cdn.example/w.jpg", cta_url: "https://shop.example/data" },
      },
    },
  ],
};
