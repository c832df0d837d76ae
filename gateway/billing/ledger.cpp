#include "gateway/billing/ledger.h"

#include <fmt/format.h>

#include <algorithm>
#include <map>
#include <set>

#include "fhir/build.h"
#include "fhir/hash.h"
#include "gateway/ccm/report.h"
#include "mappings/code_systems.h"

namespace ccm::gateway {
namespace {

using fhir::build::ReferenceId;
using fhir::build::Str;
using fhir::json::Value;

Value LinesJson(const std::vector<BillingLine>& lines) {
  Value out = Value::MakeArray();
  for (const auto& l : lines) {
    Value e = ToJson(l);  // as `evaluate` reports it, plus whose time it draws on
    e.set("practitionerTime", Value::Bool(l.practitioner_time));
    out.push_back(std::move(e));
  }
  return out;
}

// "99490x1 99439x1 (106.42)": what an entry bills, for a proposal's reason.
std::string Billed(const LedgerRow& row) {
  std::string out;
  for (const auto& l : LedgerLines(row)) {
    out += fmt::format("{}{}x{}", out.empty() ? "" : " ", l.code, l.units);
  }
  return fmt::format("{} ({})", out.empty() ? "nothing" : out, FormatCents(row.amount_cents));
}

std::string LessReason(const LedgerRow& prev, const LedgerRow& row) {
  return fmt::format("bills less: {} -> {}", Billed(prev), Billed(row));
}

// Whether proposal `p` was made before `complete_since` (both known).
bool ProposedBefore(const LedgerProposal& p, const std::optional<fhir::TimePoint>& complete_since) {
  if (!complete_since) return false;
  auto made = fhir::FhirDateTime::ParseInstant(p.created_at);
  return made && made->Earliest() < *complete_since;
}

// Whether anything of the chain ending in `row` has left the gateway: then a change must go out
// as a correction (adjustment or void), not be dropped quietly.
Result<bool> Delivered(StateStore& store, const LedgerRow& row) {
  if (row.status != LedgerStatus::kPending || row.kind != LedgerKind::kCharge) return true;
  CCM_TRY_ASSIGN(auto deliveries, store.Deliveries(row.id));
  for (const auto& d : deliveries) {
    if (d.status == DeliveryStatus::kDone) return true;
  }
  return false;
}

}  // namespace

std::string ClaimIdentifierValue(const LedgerRow& e) {
  return fmt::format("{}-{}-r{}", ReferenceId(e.patient), e.month, e.revision);
}
std::string ChargeItemIdentifierValue(const LedgerRow& e, std::string_view code) {
  return fmt::format("{}-{}-{}-r{}", ReferenceId(e.patient), e.month, code, e.revision);
}

std::string BatchName(std::string_view month, std::vector<std::string> claim_identifier_values) {
  std::sort(claim_identifier_values.begin(), claim_identifier_values.end());
  std::uint64_t h = Fnv1a64(month);
  for (const auto& v : claim_identifier_values) {
    h = Fnv1a64(v, Fnv1a64("\n", h));  // separated, so that ["ab", "c"] and ["a", "bc"] differ
  }
  return fmt::format("{}-{:016x}", month, h);
}

bool BillsLess(const LedgerRow& proposed, const LedgerRow& current) {
  if (proposed.kind == LedgerKind::kVoid) return true;
  if (proposed.amount_cents < current.amount_cents) return true;
  std::map<std::string, int, std::less<>> units;
  for (const auto& l : LedgerLines(proposed)) units[l.code] += l.units;
  for (const auto& l : LedgerLines(current)) {
    auto it = units.find(l.code);
    if (it == units.end() || it->second < l.units) return true;
  }
  return false;
}

std::size_t LedgerOutcome::held() const {
  std::size_t n = 0;
  for (const auto& p : proposals) {
    n += p.action == ProposalAction::kProposed || p.action == ProposalAction::kHeld ? 1 : 0;
  }
  return n;
}

std::string_view ToCode(ProposalAction a) noexcept {
  switch (a) {
    case ProposalAction::kProposed:
      return "proposed";
    case ProposalAction::kHeld:
      return "held";
    case ProposalAction::kConfirmed:
      return "confirmed";
    case ProposalAction::kDropped:
      return "dropped";
  }
  return "";
}

std::string_view ToCode(LedgerAction a) noexcept {
  switch (a) {
    case LedgerAction::kNew:
      return "new";
    case LedgerAction::kAdjusted:
      return "adjusted";
    case LedgerAction::kVoided:
      return "voided";
    case LedgerAction::kWithdrawn:
      return "withdrawn";
  }
  return "";
}

std::optional<Charge> ChargeFor(const PatientMonth& r, const FactStore& facts,
                                const EngineConfig& config) {
  if (r.billing.empty() || r.program == Program::kNone) return std::nullopt;
  Charge c;
  c.patient = r.patient;
  c.month = r.month.ToString();
  c.program = std::string(ToCode(r.program));
  c.lines = r.billing;
  c.minutes = r.billable_minutes;
  c.amount = r.expected_payment;
  for (const auto& cc : r.chronic_conditions) {
    for (const auto& ref : cc.conditions) {
      const StoredFact* stored = facts.Find(ref);
      if (stored == nullptr || !stored->fact) continue;
      const auto* f = std::get_if<ConditionFact>(stored->fact.get());
      if (f == nullptr) continue;
      auto bar = f->coding.find('|');
      Diagnosis d{ref, cc.category, f->coding.substr(0, bar),
                  bar == std::string::npos ? "" : f->coding.substr(bar + 1), ""};
      if (d.system == mappings::kIcd10Cm) {
        d.icd10 = d.code;
      } else if (const auto* t = config.diagnosis_codes.Find(d.system, d.code);
                 t != nullptr && t->system == mappings::kIcd10Cm) {
        d.icd10 = t->code;
      }
      c.diagnoses.push_back(std::move(d));
      break;  // one diagnosis per chronic category
    }
  }
  c.evidence = ToJson(r, config);
  c.merged_from = r.merged_from;
  return c;
}

LedgerRow ToLedgerRow(const Charge& c, std::int64_t run) {
  LedgerRow row;
  row.patient = c.patient;
  row.month = c.month;
  row.family = std::string(kCareManagementFamily);
  row.program = c.program;
  Value lines = LinesJson(c.lines);
  row.lines_json = fhir::json::Serialize(lines);
  row.staff_minutes = c.minutes.clinical_staff;
  row.practitioner_minutes = c.minutes.practitioner;
  row.amount_cents = c.amount;
  Value evidence = c.evidence;
  Value diagnoses = Value::MakeArray();
  for (const auto& d : c.diagnoses) {
    Value e = Value::MakeObject();
    e.set("condition", Str(d.condition));
    e.set("category", Str(d.category));
    e.set("system", Str(d.system));
    e.set("code", Str(d.code));
    if (!d.icd10.empty()) e.set("icd10", Str(d.icd10));
    diagnoses.push_back(std::move(e));
  }
  evidence.set("diagnoses", std::move(diagnoses));
  row.evidence_json = fhir::json::Serialize(evidence);
  // What a payer would see change: the program, the codes, units, amounts and the encounters
  // each line draws on (a corrected encounter is a corrected claim) ...
  Value fp = Value::MakeObject();
  fp.set("program", Str(c.program));
  fp.set("lines", std::move(lines));
  // ... and the claim's diagnosis codes (a Condition coded in ICD-10-CM later is a new revision,
  // which also releases a claim held for want of one).
  Value dx = Value::MakeArray();
  for (const auto& d : c.diagnoses)
    dx.push_back(Str(d.icd10.empty() ? d.system + "|" + d.code : d.icd10));
  fp.set("diagnoses", std::move(dx));
  row.fingerprint = fhir::json::Serialize(fp);
  row.run = run;
  return row;
}

std::vector<BillingLine> LedgerLines(const LedgerRow& row) {
  std::vector<BillingLine> out;
  auto v = fhir::json::Parse(row.lines_json);
  if (!v) return out;
  for (const auto& e : v->array()) {
    BillingLine l;
    l.code = std::string(e["code"].str());
    l.units =
        std::stoi(std::string(e["units"].number_text().empty() ? "0" : e["units"].number_text()));
    if (e["amount"].is_number()) {
      if (auto cents = ParseCents(e["amount"].number_text())) l.amount = *cents;
    }
    l.practitioner_time = e["practitionerTime"].as_bool();
    for (const auto& ref : e["encounters"].array()) l.encounters.emplace_back(ref.str());
    out.push_back(std::move(l));
  }
  return out;
}

std::vector<Diagnosis> LedgerDiagnoses(const LedgerRow& row) {
  std::vector<Diagnosis> out;
  auto v = fhir::json::Parse(row.evidence_json);
  if (!v) return out;
  for (const auto& d : (*v)["diagnoses"].array()) {
    out.push_back(Diagnosis{std::string(d["condition"].str()), std::string(d["category"].str()),
                            std::string(d["system"].str()), std::string(d["code"].str()),
                            std::string(d["icd10"].str())});
  }
  return out;
}

Result<LedgerOutcome> ReconcileLedger(StateStore& store, const std::string& month,
                                      const std::vector<Charge>& charges,
                                      const ReconcileOptions& options) {
  LedgerOutcome out;
  auto plan = [&]() -> Status {
    out = LedgerOutcome{};
    CCM_TRY_ASSIGN(auto active, store.LedgerEntries(LedgerQuery::Active(month)));
    std::map<std::string, LedgerRow, std::less<>> current;
    std::set<std::int64_t> active_ids;
    for (auto& row : active) {
      if (row.family != kCareManagementFamily) continue;
      active_ids.insert(row.id);
      current.emplace(row.patient, std::move(row));
    }
    std::map<std::string, const Charge*, std::less<>> wanted;
    for (const auto& c : charges) wanted.emplace(c.patient, &c);
    // Open (or approved) proposals by the entry they concern: one each (a unique index).
    CCM_TRY_ASSIGN(auto open_list, store.LedgerProposals(ProposalQuery::Open(month)));
    std::map<std::int64_t, LedgerProposal> open;
    for (auto& p : open_list) {
      if (p.proposed.family == kCareManagementFamily) open.emplace(p.entry, std::move(p));
    }
    // Closes the open proposal on `entry`, if any, because it no longer stands.
    auto retire = [&](std::int64_t entry, std::string why) {
      auto it = open.find(entry);
      if (it == open.end()) return;
      out.proposals.push_back({ProposalAction::kDropped, std::move(it->second), std::move(why)});
      open.erase(it);
    };
    // A void or a revision that bills less than the delivered `prev`: proposed the first time it
    // is seen, carried out once a later run confirms it.
    auto propose = [&](const LedgerRow& prev, LedgerRow row, LedgerAction action,
                       std::string reason) {
      if (auto it = open.find(prev.id); it != open.end()) {
        LedgerProposal p = std::move(it->second);
        open.erase(it);
        if (p.proposed.kind == row.kind && p.proposed.fingerprint == row.fingerprint) {
          std::string how;
          if (p.status == ProposalStatus::kApproved) {
            how = fmt::format("approved by {} at {}", p.approved_by, p.approved_at);
          } else if (ProposedBefore(p, options.complete_since)) {
            how = fmt::format(
                "confirmed: every needed source and type was pulled completely and in full "
                "after it was proposed (the oldest of those pulls started at {})",
                fhir::FormatUtc(*options.complete_since));
          }
          if (how.empty()) {
            out.proposals.push_back({ProposalAction::kHeld, std::move(p), ""});
            return;
          }
          std::int64_t id = p.id;
          out.proposals.push_back({ProposalAction::kConfirmed, std::move(p), std::move(how)});
          out.changes.push_back({action, prev, std::move(row), id});
          return;
        }
        out.proposals.push_back({ProposalAction::kDropped, std::move(p),
                                 fmt::format("superseded by a new proposal ({})", reason)});
      }
      LedgerProposal p;
      p.entry = prev.id;
      p.reason = std::move(reason);
      p.proposed = std::move(row);
      p.run = options.run;
      out.proposals.push_back({ProposalAction::kProposed, std::move(p), ""});
    };
    // The month was billed under a record since merged into this patient's: that record's entry
    // is voided first (itself a proposal), then this charge goes.
    auto merge_hold = [&](const Charge& c) -> std::optional<MergeHold> {
      for (const auto& merged : c.merged_from) {
        auto m = current.find(merged);
        if (m != current.end() && m->second.kind != LedgerKind::kVoid) {
          return MergeHold{c.patient, merged, m->second.id};
        }
      }
      return std::nullopt;
    };

    for (const auto& [patient, charge] : wanted) {
      LedgerRow row = ToLedgerRow(*charge, options.run);
      row.status = LedgerStatus::kPending;
      row.allow_incomplete = options.allow_incomplete;
      auto it = current.find(patient);
      if (it == current.end()) {
        if (auto hold = merge_hold(*charge)) {
          out.merge_holds.push_back(std::move(*hold));
          continue;
        }
        row.kind = LedgerKind::kCharge;
        out.changes.push_back({LedgerAction::kNew, std::nullopt, std::move(row), std::nullopt});
        continue;
      }
      const LedgerRow& prev = it->second;
      if (prev.kind != LedgerKind::kVoid && prev.fingerprint == row.fingerprint) {
        ++out.unchanged;
        retire(prev.id, fmt::format("the data came back: the engine bills again what ledger entry "
                                    "{} bills",
                                    prev.id));
        continue;
      }
      CCM_TRY_ASSIGN(bool delivered, Delivered(store, prev));
      row.revision = prev.revision + 1;
      row.supersedes = prev.id;
      if (delivered && prev.kind != LedgerKind::kVoid && BillsLess(row, prev)) {
        row.kind = LedgerKind::kAdjustment;
        std::string reason = LessReason(prev, row);
        propose(prev, std::move(row), LedgerAction::kAdjusted, std::move(reason));
        continue;
      }
      retire(prev.id,
             fmt::format("the engine now bills at least what ledger entry {} bills", prev.id));
      if (auto hold = merge_hold(*charge)) {
        out.merge_holds.push_back(std::move(*hold));
        continue;
      }
      // After a cancellation the payer holds no claim to correct: billing again is a new
      // original claim (837P frequency 1), not a replacement (7) of a cancelled one.
      row.kind = delivered && prev.kind != LedgerKind::kVoid ? LedgerKind::kAdjustment
                                                             : LedgerKind::kCharge;
      out.changes.push_back({LedgerAction::kAdjusted, prev, std::move(row), std::nullopt});
    }
    for (const auto& [patient, prev] : current) {
      if (wanted.contains(patient)) continue;
      if (prev.kind == LedgerKind::kVoid) {
        ++out.unchanged;
        continue;
      }
      CCM_TRY_ASSIGN(bool delivered, Delivered(store, prev));
      if (!delivered) {
        // Nothing went out: not billing it is the safe direction, and nothing needs cancelling.
        out.changes.push_back({LedgerAction::kWithdrawn, prev, std::nullopt, std::nullopt});
        continue;
      }
      LedgerRow row;
      row.patient = prev.patient;
      row.month = prev.month;
      row.family = prev.family;
      row.revision = prev.revision + 1;
      row.kind = LedgerKind::kVoid;
      row.status = LedgerStatus::kPending;
      row.supersedes = prev.id;
      row.lines_json = "[]";
      row.evidence_json = prev.evidence_json;  // what was billed, for the cancellation
      row.fingerprint = "void";
      row.run = options.run;
      row.allow_incomplete = options.allow_incomplete;
      auto why = options.not_billable.find(patient);
      std::string reason =
          why != options.not_billable.end()
              ? fmt::format("no longer billable: {}", why->second)
              : std::string(
                    "no longer billable: the state store holds no clinical data of the "
                    "patient");
      propose(prev, std::move(row), LedgerAction::kVoided, std::move(reason));
    }
    // Proposals on entries that were neither proposed again nor settled above.
    while (!open.empty()) {
      std::int64_t entry = open.begin()->first;
      retire(entry, active_ids.contains(entry)
                        ? "the engine no longer proposes it"
                        : fmt::format("ledger entry {} is no longer active", entry));
    }

    std::vector<std::string> claim_ids;
    for (const auto& change : out.changes) {
      if (change.entry) claim_ids.push_back(ClaimIdentifierValue(*change.entry));
    }
    if (!claim_ids.empty()) out.batch = BatchName(month, std::move(claim_ids));
    if (options.dry_run) return {};
    // Dropped proposals first: the store allows one open proposal per entry.
    for (const auto& pc : out.proposals) {
      if (pc.action == ProposalAction::kDropped) {
        CCM_TRY(store.CloseLedgerProposal(pc.proposal.id, ProposalStatus::kDropped, pc.outcome,
                                          std::nullopt));
      }
    }
    for (auto& change : out.changes) {
      if (change.action == LedgerAction::kWithdrawn) {
        CCM_TRY(store.WithdrawLedgerEntry(change.previous->id));
        continue;
      }
      CCM_TRY_ASSIGN(change.entry->id, store.AddLedgerEntry(*change.entry));
      for (const auto& channel : options.channels) {
        CCM_TRY(store.AddDelivery(change.entry->id, channel, out.batch));
      }
      if (!change.proposal) continue;
      for (const auto& pc : out.proposals) {
        if (pc.action == ProposalAction::kConfirmed && pc.proposal.id == *change.proposal) {
          CCM_TRY(store.CloseLedgerProposal(pc.proposal.id, ProposalStatus::kCarriedOut, pc.outcome,
                                            change.entry->id));
        }
      }
    }
    for (auto& pc : out.proposals) {
      if (pc.action == ProposalAction::kProposed) {
        CCM_TRY_ASSIGN(pc.proposal.id, store.AddLedgerProposal(pc.proposal));
      }
    }
    return {};
  };
  if (options.dry_run) {
    CCM_TRY(plan());
  } else {
    CCM_TRY(store.InTransaction(plan));
  }
  return out;
}

Result<std::size_t> MarkDelivered(StateStore& store, const std::vector<std::int64_t>& entries) {
  std::size_t changed = 0;
  auto mark = [&]() -> Status {
    for (std::int64_t id : entries) {
      CCM_TRY_ASSIGN(auto row, store.LedgerEntry(id));
      if (!row || row->status != LedgerStatus::kPending) continue;
      CCM_TRY_ASSIGN(auto deliveries, store.Deliveries(id));
      // No channel configured: nothing went anywhere, so the entry stays pending.
      bool all_done = !deliveries.empty();
      for (const auto& d : deliveries) all_done = all_done && d.status == DeliveryStatus::kDone;
      if (!all_done) continue;
      CCM_TRY(store.MarkSubmitted(id));
      ++changed;
    }
    return {};
  };
  CCM_TRY(store.InTransaction(mark));
  return changed;
}

}  // namespace ccm::gateway
