// The egress grammar's public API (SPEC.md, "Destination rules"), its token form
// (`authorization_details`, SPEC.md "Tokens") and address classification (docs/addresses.md).
// Pure: no I/O, no clock.
export { type AddressVerdict, classifyAddress, isPublicAddress, parseAddress } from './address.ts';
export {
  ADDRESS_CLASSES,
  ADDRESS_RANGES,
  type AddressClass,
  type AddressRange,
  type Embedding,
} from './address-ranges.ts';
export {
  checkEgressDetail,
  type EgressDetail,
  type EgressDetailCheck,
  type EgressDetailsParse,
  formatEgressDetails,
  parseEgressDetails,
} from './authorization-details.ts';
export { formatRule } from './format.ts';
export { formatHostPattern, normaliseName, type TargetHost } from './host.ts';
export { intersectRule, intersectRules, ruleContains, rulesCover, simplifyRules } from './intersect.ts';
export { compileRuleSet, findMatch, matchRule, matchRules, type RuleSet, type Target } from './match.ts';
export {
  isOpened,
  type Opening,
  type OpeningError,
  type OpeningErrorCode,
  type OpeningParse,
  parseOpening,
} from './opening.ts';
export { type ParseResult, parseRule, type RuleError } from './parse.ts';
export type { PathProblem } from './path.ts';
export { DEFAULT_PORTS, type HostPattern, type Rule, type Scheme } from './rule.ts';
export {
  normaliseTarget,
  normaliseTargetHost,
  type RawTarget,
  type TargetProblem,
  type TargetResult,
} from './target.ts';
