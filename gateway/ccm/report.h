// Renders engine results: NDJSON records (the stable contract of `evaluate`, documented in
// docs/ccm-rules.md "Output"), CSV for spreadsheets, and a readable terminal table with totals.
#pragma once

#include <string>
#include <vector>

#include "fhir/json.h"
#include "gateway/ccm/engine.h"

namespace ccm::gateway {

// {"code", "units", "amount" (decimal or null), "encounters"}: a billing line as `evaluate`
// writes it.
fhir::json::Value ToJson(const BillingLine& line);
// One JSON object per patient-month.
fhir::json::Value ToJson(const PatientMonth& r, const EngineConfig& config);
// NDJSON: one compact line per result.
std::string ToNdjson(const std::vector<PatientMonth>& results, const EngineConfig& config);
// One RFC 4180 field: quoted (with quotes doubled) when it holds a comma, quote or line break.
std::string CsvField(std::string_view s);
// RFC 4180 CSV with a header row; one row per patient-month.
std::string ToCsv(const std::vector<PatientMonth>& results);
// Fixed-width table plus totals, for a terminal.
std::string ToTable(const std::vector<PatientMonth>& results, const EngineConfig& config);

}  // namespace ccm::gateway
