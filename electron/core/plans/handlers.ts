// Plans: lay one out (changes nothing), or journal it and run it in the background.
import type { HandlersFor } from '../handlers.ts';
import type { planArgs } from './contract.ts';
import type { ServicePlans } from './service-plans.ts';

export function createPlanHandlers({ plans }: { plans: ServicePlans }): HandlersFor<typeof planArgs> {
  return {
    'plan:preview': (req) => plans.preview(req),
    'plan:start': (req) => plans.start(req),
  };
}
