#include "gateway/writeback/billing_outputs.h"

#include <fmt/format.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <set>

#include "fhir/build.h"
#include "fhir/client/http_client.h"
#include "fhir/datetime.h"
#include "fhir/hash.h"
#include "gateway/ccm/report.h"
#include "gateway/io/files.h"
#include "gateway/sync/connection.h"
#include "mappings/code_systems.h"

namespace ccm::gateway {
namespace {

using fhir::build::Coding;
using fhir::build::Concept;
using fhir::build::Identifier;
using fhir::build::Ref;
using fhir::build::ReferenceId;
using fhir::build::Str;
using fhir::json::Value;

Value Money(Cents c, const std::string& currency) {
  Value m = Value::MakeObject();
  m.set("value", Value::Number(FormatCents(c)));
  m.set("currency", Str(currency));
  return m;
}

// A diagnosis as a CodeableConcept: the ICD-10-CM code first (what a professional claim needs),
// then the Condition's own coding when it is something else.
std::string Icd10(const Diagnosis& d) {
  if (!d.icd10.empty()) return d.icd10;
  return d.system == mappings::kIcd10Cm ? d.code : std::string();
}

Value DiagnosisConcept(const Diagnosis& d) {
  Value codings = Value::MakeArray();
  if (std::string icd = Icd10(d); !icd.empty()) codings.push_back(Coding(mappings::kIcd10Cm, icd));
  if (d.system != mappings::kIcd10Cm && !d.code.empty())
    codings.push_back(Coding(d.system, d.code));
  Value cc = Value::MakeObject();
  cc.set("coding", std::move(codings));
  return cc;
}

bool HasIcd10(const LedgerRow& row) {
  for (const auto& d : LedgerDiagnoses(row)) {
    if (!Icd10(d).empty()) return true;
  }
  return false;
}

// The calendar month "YYYY-MM" as a FHIR Period of dates (both ends inclusive days).
Value MonthPeriod(std::string_view month) {
  Value p = Value::MakeObject();
  p.set("start", Str(fmt::format("{}-01", month)));
  std::string end;
  if (auto ym = YearMonth::Parse(month)) {
    date::year_month_day_last last{date::year{ym->year} / date::month{ym->month} / date::last};
    end = fmt::format("{}-{:02}", month, static_cast<unsigned>(last.day()));
  }
  p.set("end", Str(end));
  return p;
}

// A name-based UUID (RFC 9562 version 8: vendor-defined) for urn:uuid fullUrls: the same name
// always gives the same UUID, so a regenerated Bundle is byte-identical.
std::string NameUuid(std::string_view name) {
  std::uint64_t a = Fnv1a64(name, 0xcbf29ce484222325ULL);
  std::uint64_t b = Fnv1a64(name, 0x84222325cbf29ce4ULL ^ a);
  return fmt::format("urn:uuid:{:08x}-{:04x}-{:04x}-{:04x}-{:012x}", a >> 32, (a >> 16) & 0xffff,
                     (a & 0x0fff) | 0x8000, ((b >> 48) & 0x3fff) | 0x8000, b & 0xffffffffffffULL);
}

std::string Search(std::string_view system, std::string_view value) {
  return fmt::format("{}|{}", system, value);
}

// Previous revisions of `entry`, newest first.
Result<std::vector<LedgerRow>> Chain(StateStore& store, const LedgerRow& entry) {
  std::vector<LedgerRow> out;
  std::optional<std::int64_t> prev = entry.supersedes;
  while (prev) {
    CCM_TRY_ASSIGN(auto row, store.LedgerEntry(*prev));
    if (!row) break;
    prev = row->supersedes;
    out.push_back(std::move(*row));
  }
  return out;
}

// Makes sure the ChargeItem with `value` is "entered-in-error" (a revision that no longer bills).
Status WithdrawChargeItem(DeliveryContext& ctx, const std::string& value, DeliveryReport& report,
                          std::vector<AuditRow>& audits) {
  std::string system = ctx.config.identifier_system + ":charge-item";
  for (int attempt = 0; attempt <= ctx.config.max_conflict_retries; ++attempt) {
    CCM_TRY_ASSIGN(auto found,
                   ctx.ehr->SearchAll("ChargeItem", {{"identifier", Search(system, value)}}));
    bool conflict = false;
    for (Value& ci : found) {
      if (ci["status"].str() == "entered-in-error") continue;
      std::string version(ci["meta"]["versionId"].str());
      ci.set("status", Str("entered-in-error"));
      auto written =
          ctx.ehr->Update(ci, version.empty() ? std::nullopt : std::optional<std::string>(version));
      if (!written && written.error().is(Errc::kConflict)) {
        conflict = true;  // someone changed it: read again and re-apply
        break;
      }
      if (!written) return written.error();
      ++report.charge_items_written;
      audits.push_back(AuditRow{0, "", ctx.run, "withdraw",
                                fmt::format("ChargeItem/{}", ci["id"].str()),
                                std::string(written->body["meta"]["versionId"].str()),
                                "superseded by a later ledger revision", ""});
      if (ctx.checkpoint) ctx.checkpoint("charge-item");
    }
    if (!conflict) return {};
  }
  return MakeError(Errc::kConflict,
                   // `value` begins with the patient id: not in a message that reaches the log.
                   "a ChargeItem being withdrawn kept changing under us; left for the next run");
}

// Identifier values and searches are built from patient ids (R4 datatypes.html#id:
// [A-Za-z0-9\-\.]{1,64}); a '|', ',' or space would change what a conditional create matches.
constexpr std::string_view kInvalidPatientId =
    "held: the patient's id is not a FHIR id (letters, digits, '-' and '.', at most 64), so it "
    "cannot be part of an identifier; correct the record's id in the EHR";

// Writes the entry's ChargeItems (and withdraws its earlier revisions'); the audit records of the
// writes made are appended to `audits`, also when a later write fails.
Status DeliverChargeItems(DeliveryContext& ctx, const LedgerRow& entry, DeliveryReport& report,
                          std::vector<AuditRow>& audits) {
  if (!fhir::IsValidId(ReferenceId(entry.patient))) {
    return MakeError(Errc::kInvalidArgument, std::string(kInvalidPatientId));
  }
  if (ctx.ehr == nullptr) {
    return MakeError(Errc::kInvalidArgument,
                     "ChargeItems are queued but writeBack.chargeItems is off or has no target");
  }
  std::string system = ctx.config.identifier_system + ":charge-item";
  for (const BillingLine& line : LedgerLines(entry)) {
    Value ci = MakeChargeItem(entry, line, "billable", ctx.config, ctx.currency);
    std::string value = ChargeItemIdentifierValue(entry, line.code);
    CCM_TRY_ASSIGN(
        auto created,
        ctx.ehr->Create(ci, "identifier=" + fhir::EncodeQueryValue(Search(system, value))));
    std::string target = fmt::format("ChargeItem/{}", created.body["id"].str());
    audits.push_back(AuditRow{0, "", ctx.run, created.status == 201 ? "create" : "exists", target,
                              std::string(created.body["meta"]["versionId"].str()),
                              fmt::format("{} x{} for {}", line.code, line.units, entry.month),
                              ""});
    if (created.status == 201) ++report.charge_items_written;
    if (ctx.checkpoint) ctx.checkpoint("charge-item");
  }
  // Earlier revisions stop billing: exactly one billable ChargeItem per patient-month-code.
  CCM_TRY_ASSIGN(auto chain, Chain(ctx.store, entry));
  std::set<std::string> current;
  for (const BillingLine& line : LedgerLines(entry)) {
    current.insert(ChargeItemIdentifierValue(entry, line.code));
  }
  for (const LedgerRow& old : chain) {
    for (const BillingLine& line : LedgerLines(old)) {
      std::string value = ChargeItemIdentifierValue(old, line.code);
      if (!current.contains(value)) CCM_TRY(WithdrawChargeItem(ctx, value, report, audits));
    }
  }
  return {};
}

std::string Problem(std::string_view channel, const LedgerRow& e, std::string_view what) {
  // No patient reference: these lines go to logs, and an EHR's patient id may be a record number
  // (PHI). The entry id finds the patient with `ccm-gateway ledger`.
  return fmt::format("{} {} ledger entry {}: {}", channel, e.month, e.id, what);
}

void Fail(DeliveryContext& ctx, DeliveryReport& report, const std::string& channel,
          const std::vector<LedgerRow>& rows, const std::string& what) {
  for (const auto& e : rows) {
    report.problems.push_back(Problem(channel, e, what));
    static_cast<void>(ctx.store.SetDelivery(e.id, channel, DeliveryStatus::kFailed, what));
    ++report.failed;
  }
}

// Writes and posts one batch of claims, and marks them delivered.
void Send(DeliveryContext& ctx, DeliveryReport& report, const PayerConfig& payer,
          const std::string& channel, const std::string& batch,
          const std::vector<ClaimInput>& claims) {
  Value bundle = MakeClaimBundle(claims, payer, ctx.config, batch, ctx.currency);
  std::string where;
  Status s;
  if (!payer.directory.empty()) {
    std::error_code ec;
    std::filesystem::create_directories(payer.directory, ec);  // an error shows in the write
    auto file = payer.directory / fmt::format("claims-{}-{}.json", payer.name, batch);
    s = WriteFileAtomically(file, fhir::json::SerializePretty(bundle) + "\n");
    if (s && payer.csv) {
      auto csv = payer.directory / fmt::format("claims-{}-{}.csv", payer.name, batch);
      s = WriteFileAtomically(csv, MakeClaimCsv(claims, payer, batch));
      if (s) report.files.push_back(csv.string());
    }
    if (s) {
      report.files.push_back(file.string());
      where = file.string();
      if (ctx.checkpoint) ctx.checkpoint("claims-file");
    }
  }
  if (s && payer.endpoint) {
    auto client = MakeFhirClient(*payer.endpoint, "billing");
    if (!client) {
      s = client.error();
    } else {
      std::string query = "identifier=" + fhir::EncodeQueryValue(fmt::format(
                                              "{}:claim-batch|{}-{}", ctx.config.identifier_system,
                                              payer.name, batch));
      auto posted = (*client)->Create(bundle, query);
      if (!posted) {
        s = posted.error();
        if (!where.empty()) {
          // Half delivered: the payer may already take the file. Say so; the next run writes the
          // same file again (same name, same content) and repeats the conditional create.
          s = Error{s.error().code,
                    fmt::format("claims file {} written, but sending to the endpoint failed: {}; "
                                "the next bill run sends it again (the file unchanged, the "
                                "create conditional on the batch identifier)",
                                where, s.error().message)};
        }
      } else {
        where += (where.empty() ? "" : "; ") +
                 fmt::format("{}/Bundle/{}", fhir::RedactUrl(payer.endpoint->base_url),
                             posted->body["id"].str());
        static_cast<void>(ctx.store.AddAudit(
            AuditRow{0, "", ctx.run, posted->status == 201 ? "create" : "exists",
                     fmt::format("Bundle/{}", posted->body["id"].str()),
                     std::string(posted->body["meta"]["versionId"].str()),
                     fmt::format("claims for {} to {}", batch, payer.name), ""}));
        if (ctx.checkpoint) ctx.checkpoint("claims-endpoint");
      }
    }
  }
  if (!s) {
    std::vector<LedgerRow> failed;
    for (const auto& in : claims) failed.push_back(in.entry);
    Fail(ctx, report, channel, failed, s.error().message);
    return;
  }
  auto done = [&]() -> Status {
    for (const auto& in : claims)
      CCM_TRY(ctx.store.SetDelivery(in.entry.id, channel, DeliveryStatus::kDone, where));
    return {};
  };
  if (Status d = ctx.store.InTransaction(done); !d) {
    report.problems.push_back(d.error().message);
  } else {
    report.done += claims.size();
  }
}

}  // namespace

std::string PayerChannel(const PayerConfig& payer) { return "payer:" + payer.name; }

std::string MemberId(std::string_view patient_json, const PayerConfig& payer) {
  if (patient_json.empty()) return "";
  auto patient = fhir::json::Parse(patient_json);
  if (!patient || (*patient)["resourceType"].str() != "Patient") return "";
  std::string mbi;
  for (const auto& id : (*patient)["identifier"].array()) {
    if (id["value"].str().empty()) continue;
    if (!payer.member_id_system.empty() && id["system"].str() == payer.member_id_system) {
      return std::string(id["value"].str());
    }
    if (id["system"].str() == fhir::kMbiSystem && mbi.empty()) mbi = std::string(id["value"].str());
  }
  return mbi;
}

Value MakeChargeItem(const LedgerRow& entry, const BillingLine& line, std::string_view status,
                     const WriteBackConfig& config, const std::string& currency) {
  Value ci = Value::MakeObject();
  ci.set("resourceType", Str("ChargeItem"));
  ci.set("identifier", Value::MakeArray({Identifier(config.identifier_system + ":charge-item",
                                                    ChargeItemIdentifierValue(entry, line.code))}));
  ci.set("status", Str(status));
  ci.set("code", Concept(kCptSystem, line.code));
  ci.set("subject", Ref(entry.patient));
  ci.set("occurrencePeriod", MonthPeriod(entry.month));
  if (!config.provider.reference.empty()) {
    Value performer = Value::MakeObject();
    performer.set("actor", Ref(config.provider.reference));
    ci.set("performer", Value::MakeArray({std::move(performer)}));
  }
  Value quantity = Value::MakeObject();
  quantity.set("value", Value::Number(std::int64_t{line.units}));
  ci.set("quantity", std::move(quantity));
  if (line.amount) {
    // The fee-schedule amount the ledger expects, for reconciliation; not a price override.
    Value ext = Value::MakeObject();
    ext.set("url", Str("urn:ccm-gateway:extension:expected-payment"));
    ext.set("valueMoney", Money(*line.amount, currency));
    ci.set("extension", Value::MakeArray({std::move(ext)}));
  }
  Value reasons = Value::MakeArray();
  for (const auto& d : LedgerDiagnoses(entry)) {
    if (!d.code.empty()) reasons.push_back(DiagnosisConcept(d));
  }
  if (reasons.size() > 0) ci.set("reason", std::move(reasons));
  Value support = Value::MakeArray();
  for (const auto& enc : line.encounters) support.push_back(Ref(enc));
  if (support.size() > 0) ci.set("supportingInformation", std::move(support));
  return ci;
}

Value MakeClaimBundle(const std::vector<ClaimInput>& claims, const PayerConfig& payer,
                      const WriteBackConfig& config, const std::string& batch,
                      const std::string& currency) {
  Value entries = Value::MakeArray();
  auto add = [&](const std::string& full_url, Value resource) {
    Value e = Value::MakeObject();
    e.set("fullUrl", Str(full_url));
    e.set("resource", std::move(resource));
    entries.push_back(std::move(e));
  };
  std::string batch_id = fmt::format("{}-{}", payer.name, batch);
  // The billing provider (an Organization, or the practitioner who bills).
  std::string provider_url = NameUuid("provider|" + config.provider.npi);
  {
    bool practitioner = config.provider.reference.starts_with("Practitioner/");
    Value p = Value::MakeObject();
    p.set("resourceType", Str(practitioner ? "Practitioner" : "Organization"));
    p.set("identifier",
          Value::MakeArray({Identifier("http://hl7.org/fhir/sid/us-npi", config.provider.npi)}));
    if (practitioner) {
      Value name = Value::MakeObject();
      name.set("text", Str(config.provider.name));
      p.set("name", Value::MakeArray({std::move(name)}));
    } else {
      p.set("active", Value::Bool(true));
      p.set("name", Str(config.provider.name));
    }
    add(provider_url, std::move(p));
  }
  std::string payer_url = NameUuid("payer|" + payer.name);
  {
    Value o = Value::MakeObject();
    o.set("resourceType", Str("Organization"));
    if (!payer.identifier_system.empty()) {
      o.set("identifier",
            Value::MakeArray({Identifier(payer.identifier_system, payer.identifier_value)}));
    }
    o.set("active", Value::Bool(true));
    o.set("name", Str(payer.display));
    add(payer_url, std::move(o));
  }
  std::set<std::string> patients_added;
  std::string claim_system = config.identifier_system + ":claim";
  std::string latest;
  for (const ClaimInput& in : claims) {
    const LedgerRow& e = in.entry;
    latest = std::max(latest, e.created_at);
    std::string patient_url = NameUuid("patient|" + e.patient);
    std::string coverage_url = NameUuid("coverage|" + payer.name + "|" + e.patient);
    if (patients_added.insert(e.patient).second) {
      Value patient = Value::MakeObject();
      if (!in.patient_json.empty()) {
        if (auto parsed = fhir::json::Parse(in.patient_json)) patient = std::move(*parsed);
      }
      if (!patient.is_object() || patient["resourceType"].str() != "Patient") {
        patient = Value::MakeObject();
        patient.set("resourceType", Str("Patient"));
        patient.set("id", Str(ReferenceId(e.patient)));
      }
      std::string member = MemberId(in.patient_json, payer);
      add(patient_url, std::move(patient));
      Value cov = Value::MakeObject();
      cov.set("resourceType", Str("Coverage"));
      cov.set("status", Str("active"));
      if (!member.empty()) cov.set("subscriberId", Str(member));
      cov.set("beneficiary", Ref(patient_url));
      cov.set("payor", Value::MakeArray({Ref(payer_url)}));
      add(coverage_url, std::move(cov));
    }
    // A void cancels the claim it replaces; others are claims, corrections pointing at the prior.
    const LedgerRow& billed = in.cancels ? *in.cancels : e;
    Value c = Value::MakeObject();
    c.set("resourceType", Str("Claim"));
    c.set("identifier", Value::MakeArray({Identifier(claim_system, ClaimIdentifierValue(billed))}));
    c.set("status", Str(in.cancels ? "cancelled" : "active"));
    c.set("type", Concept("http://terminology.hl7.org/CodeSystem/claim-type", "professional"));
    c.set("use", Str("claim"));
    c.set("patient", Ref(patient_url));
    c.set("billablePeriod", MonthPeriod(e.month));
    c.set("created", Str(e.created_at));
    c.set("insurer", Ref(payer_url));
    c.set("provider", Ref(provider_url));
    c.set("priority", Concept("http://terminology.hl7.org/CodeSystem/processpriority", "normal"));
    if (in.replaces && !in.cancels) {
      Value rel = Value::MakeObject();
      Value claim_ref = Value::MakeObject();
      claim_ref.set("identifier", Identifier(claim_system, ClaimIdentifierValue(*in.replaces)));
      rel.set("claim", std::move(claim_ref));
      rel.set(
          "relationship",
          Concept("http://terminology.hl7.org/CodeSystem/ex-relatedclaimrelationship", "prior"));
      c.set("related", Value::MakeArray({std::move(rel)}));
    }
    Value diagnoses = Value::MakeArray();
    Value pointers = Value::MakeArray();
    std::int64_t seq = 0;
    for (const auto& d : LedgerDiagnoses(billed)) {
      if (d.code.empty()) continue;
      Value dx = Value::MakeObject();
      dx.set("sequence", Value::Number(++seq));
      dx.set("diagnosisCodeableConcept", DiagnosisConcept(d));
      diagnoses.push_back(std::move(dx));
      if (seq <= 4) pointers.push_back(Value::Number(seq));  // 837P: up to 4 pointers per line
    }
    if (diagnoses.size() > 0) c.set("diagnosis", std::move(diagnoses));
    Value insurance = Value::MakeObject();
    insurance.set("sequence", Value::Number(std::int64_t{1}));
    insurance.set("focal", Value::Bool(true));
    insurance.set("coverage", Ref(coverage_url));
    c.set("insurance", Value::MakeArray({std::move(insurance)}));
    Value items = Value::MakeArray();
    Cents total = 0;
    std::int64_t item_seq = 0;
    for (const auto& line : LedgerLines(billed)) {
      Value item = Value::MakeObject();
      item.set("sequence", Value::Number(++item_seq));
      if (pointers.size() > 0) item.set("diagnosisSequence", pointers);
      item.set("productOrService", Concept(kCptSystem, line.code));
      item.set("servicedPeriod", MonthPeriod(e.month));
      Value q = Value::MakeObject();
      q.set("value", Value::Number(std::int64_t{line.units}));
      item.set("quantity", std::move(q));
      if (line.amount && line.units > 0) {
        item.set("unitPrice", Money(*line.amount / line.units, currency));
        item.set("net", Money(*line.amount, currency));
        total += *line.amount;
      }
      items.push_back(std::move(item));
    }
    if (items.size() > 0) c.set("item", std::move(items));
    c.set("total", Money(total, currency));
    add(NameUuid("claim|" + claim_system + "|" + ClaimIdentifierValue(billed) +
                 (in.cancels ? "|cancel" : "")),
        std::move(c));
  }
  Value b = Value::MakeObject();
  b.set("resourceType", Str("Bundle"));
  b.set("identifier", Identifier(config.identifier_system + ":claim-batch", batch_id));
  b.set("type", Str("collection"));
  b.set("timestamp", Str(latest));
  b.set("entry", std::move(entries));
  return b;
}

std::string MakeClaimCsv(const std::vector<ClaimInput>& claims, const PayerConfig& payer,
                         const std::string& batch) {
  std::string out =
      "payer,batch,claim,kind,patient,month,code,units,amount,staff_minutes,"
      "practitioner_minutes,diagnoses\r\n";
  Cents total = 0;
  std::int64_t units = 0;
  std::size_t rows = 0;
  for (const ClaimInput& in : claims) {
    const LedgerRow& billed = in.cancels ? *in.cancels : in.entry;
    std::string dx;
    for (const auto& d : LedgerDiagnoses(billed)) {
      if (d.code.empty()) continue;
      std::string icd = Icd10(d);
      dx += (dx.empty() ? "" : " ") + (icd.empty() ? d.code : icd);
    }
    // A cancellation reverses what was billed: negative units and amounts.
    int sign = in.cancels ? -1 : 1;
    for (const auto& line : LedgerLines(billed)) {
      Cents amount = line.amount.value_or(0) * sign;
      out += fmt::format("{},{},{},{},{},{},{},{},{},{},{},{}\r\n", CsvField(payer.name),
                         CsvField(batch), CsvField(ClaimIdentifierValue(billed)),
                         ToCode(in.entry.kind), CsvField(in.entry.patient), in.entry.month,
                         line.code, line.units * sign, FormatCents(amount), billed.staff_minutes,
                         billed.practitioner_minutes, CsvField(dx));
      total += amount;
      units += line.units * sign;
      ++rows;
    }
  }
  out += fmt::format("{},{},TOTAL,,{} claim(s),,,{},{},,,\r\n", CsvField(payer.name),
                     CsvField(batch), claims.size(), units, FormatCents(total));
  static_cast<void>(rows);
  return out;
}

std::string HoldReason(const ClaimInput& in, const PayerConfig& payer) {
  const LedgerRow& e = in.entry;
  if (!fhir::IsValidId(ReferenceId(e.patient))) return std::string(kInvalidPatientId);
  if (!HasIcd10(in.cancels ? *in.cancels : e)) {
    // A professional claim without an ICD-10-CM diagnosis is rejected by the payer; hold this
    // patient-month (the rest of the batch goes) until a code is there: coding the Condition in
    // ICD-10-CM or adding mappings.diagnosisCodes makes a new ledger revision.
    return "held: no ICD-10-CM diagnosis for the counted conditions (code them in ICD-10-CM in "
           "the EHR, or map their codes with mappings.diagnosisCodes)";
  }
  if (in.cancels) return "";  // a cancellation names the claim the payer already has
  // A claim the payer cannot match to a member is denied (837P loop 2010BA NM109: the
  // subscriber's member id; for Medicare the MBI since 2020): hold it until the record has one.
  if (in.patient_json.empty()) {
    return "held: no Patient resource of this patient in the state store, so the claim has no "
           "member id (pull Patient: run `ccm-gateway sync`, and check the source's "
           "resourceTypes)";
  }
  if (MemberId(in.patient_json, payer).empty()) {
    return fmt::format(
        "held: the Patient has no Medicare Beneficiary Identifier (identifier system {}){}; record "
        "it in the EHR and run `ccm-gateway sync`",
        fhir::kMbiSystem,
        payer.member_id_system.empty()
            ? std::string(" (for another payer, set billing.payers[].memberIdSystem)")
            : fmt::format(" nor a member id ({})", payer.member_id_system));
  }
  return "";
}

void ResolvePriorClaim(ClaimInput& in, const std::vector<LedgerRow>& chain,
                       const std::function<bool(std::int64_t entry)>& received) {
  for (const LedgerRow& old : chain) {
    if (old.kind == LedgerKind::kVoid && in.entry.kind != LedgerKind::kVoid) break;
    if (received(old.id)) {
      (in.entry.kind == LedgerKind::kVoid ? in.cancels : in.replaces) = old;
      break;
    }
  }
}

PayerBatchPlan PlanPayerBatch(std::vector<ClaimInput> claims, const PayerConfig& payer) {
  PayerBatchPlan plan;
  for (ClaimInput& in : claims) {
    if (in.entry.kind == LedgerKind::kVoid && !in.cancels) {
      // This payer never received the charge being voided: nothing to cancel there.
      plan.nothing_to_cancel.push_back(std::move(in.entry));
    } else if (std::string held = HoldReason(in, payer); !held.empty()) {
      plan.held.emplace_back(std::move(in.entry), std::move(held));
    } else {
      plan.send.push_back(std::move(in));
    }
  }
  return plan;
}

DeliveryReport DeliverOpen(DeliveryContext& ctx) {
  DeliveryReport report;
  auto open = ctx.store.UndoneDeliveries();
  if (!open) {
    report.problems.push_back(open.error().message);
    return report;
  }
  // Payer deliveries grouped by channel and batch; ChargeItems one entry at a time.
  std::map<std::pair<std::string, std::string>, std::vector<LedgerRow>> batches;
  std::string unreachable;  // why the ChargeItem server could not be reached, once it could not
  for (const DeliveryRow& d : *open) {
    auto entry = ctx.store.LedgerEntry(d.entry);
    if (!entry || !*entry) {
      report.problems.push_back(fmt::format("{}: ledger entry {} is missing", d.channel, d.entry));
      continue;
    }
    report.entries.push_back(d.entry);
    if (d.channel == kChargeItemChannel) {
      // Once the server is out of reach (after the client's retries), the rest of this run's
      // ChargeItems are not tried one by one: they fail with that reason and go next run.
      std::vector<AuditRow> audits;
      Status s = unreachable.empty()
                     ? DeliverChargeItems(ctx, **entry, report, audits)
                     : Status(MakeError(Errc::kNetwork, "not tried: " + unreachable));
      if (!s && unreachable.empty() &&
          (s.error().is(Errc::kNetwork) || s.error().is(Errc::kTimeout) ||
           s.error().is(Errc::kServerError))) {
        unreachable = s.error().message;
      }
      std::string detail = s ? "written" : s.error().message;
      if (!s) report.problems.push_back(Problem(d.channel, **entry, detail));
      // The entry's audit records and its delivery status in one commit (a commit per row costs
      // more than the write to the server). A crash before it loses only this entry's records;
      // the next run finds its ChargeItems there and records them as "exists".
      auto record = [&]() -> Status {
        for (const AuditRow& a : audits) CCM_TRY(ctx.store.AddAudit(a));
        return ctx.store.SetDelivery(d.entry, d.channel,
                                     s ? DeliveryStatus::kDone : DeliveryStatus::kFailed, detail);
      };
      if (Status rec = ctx.store.InTransaction(record); !rec) {
        report.problems.push_back(rec.error().message);
      }
      (s ? report.done : report.failed) += 1;
      continue;
    }
    batches[{d.channel, d.batch}].push_back(std::move(**entry));
  }
  for (auto& [key, rows] : batches) {
    const auto& [channel, queued] = key;
    const PayerConfig* payer = nullptr;
    for (const auto& p : ctx.config.payers) {
      if (PayerChannel(p) == channel) payer = &p;
    }
    if (payer == nullptr) {
      Fail(ctx, report, channel, rows,
           "the payer is no longer configured (billing.payers); the delivery is kept");
      continue;
    }
    // Gather what the decisions read: each entry's earlier revisions, which of them this payer
    // received, and the stored Patient.
    std::vector<ClaimInput> gathered;
    bool ok = true;
    for (const LedgerRow& e : rows) {
      ClaimInput in{e, std::nullopt, std::nullopt, ""};
      auto chain = Chain(ctx.store, e);
      if (!chain) {
        Fail(ctx, report, channel, rows, chain.error().message);
        ok = false;
        break;
      }
      ResolvePriorClaim(in, *chain, [&](std::int64_t id) {
        auto ds = ctx.store.Deliveries(id);
        return ds && std::any_of(ds->begin(), ds->end(), [&](const DeliveryRow& d) {
                 return d.channel == channel && d.status == DeliveryStatus::kDone;
               });
      });
      for (const auto& source : ctx.sources) {
        if (auto pj = ctx.store.ResourceJson(source, "Patient", ReferenceId(e.patient));
            pj && *pj) {
          in.patient_json = std::move(**pj);
          break;
        }
      }
      gathered.push_back(std::move(in));
    }
    if (!ok) continue;
    // Decide, then act on each decision.
    PayerBatchPlan plan = PlanPayerBatch(std::move(gathered), *payer);
    for (const LedgerRow& e : plan.nothing_to_cancel) {
      static_cast<void>(
          ctx.store.SetDelivery(e.id, channel, DeliveryStatus::kDone, "nothing to cancel"));
      ++report.done;
    }
    for (const auto& [e, held] : plan.held) {
      // Held for this patient only; the rest of the batch goes. It leaves the batch, so that
      // once released it goes out in a batch of its own rather than under a name the payer
      // already has (a conditional create would then find the old Bundle and drop it).
      report.problems.push_back(Problem(channel, e, held));
      auto hold = [&]() -> Status {
        if (!queued.empty()) CCM_TRY(ctx.store.SetDeliveryBatch(e.id, channel, ""));
        return ctx.store.SetDelivery(e.id, channel, DeliveryStatus::kFailed, held);
      };
      if (Status s = ctx.store.InTransaction(hold); !s) {
        report.problems.push_back(s.error().message);
      }
      ++report.failed;
    }
    std::vector<ClaimInput>& claims = plan.send;
    if (claims.empty()) continue;
    if (!queued.empty()) {
      Send(ctx, report, *payer, channel, queued, claims);
      continue;
    }
    // Released claims: a batch of their own per month, named by their content and stored before
    // anything is written, so that a run killed half-way rebuilds the same batch.
    std::map<std::string, std::vector<ClaimInput>> by_month;
    for (auto& in : claims) by_month[in.entry.month].push_back(std::move(in));
    for (auto& [month, released] : by_month) {
      std::vector<std::string> ids;
      for (const auto& in : released) ids.push_back(ClaimIdentifierValue(in.entry));
      std::string batch = BatchName(month, std::move(ids));
      auto assign = [&]() -> Status {
        for (const auto& in : released) {
          CCM_TRY(ctx.store.SetDeliveryBatch(in.entry.id, channel, batch));
        }
        return {};
      };
      if (Status s = ctx.store.InTransaction(assign); !s) {
        std::vector<LedgerRow> failed;
        for (const auto& in : released) failed.push_back(in.entry);
        Fail(ctx, report, channel, failed, s.error().message);
        continue;
      }
      Send(ctx, report, *payer, channel, batch, released);
    }
  }
  return report;
}

}  // namespace ccm::gateway
