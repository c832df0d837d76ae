#include "fhir/json.h"

#include <gtest/gtest.h>

namespace ccm::fhir::json {
namespace {

TEST(JsonTest, KeepsDecimalTextAndMemberOrder) {
  const std::string text =
      R"({"resourceType":"Observation","valueQuantity":{"value":1.50,"unit":"mg"},"b":12345678901234567890.123456789012,"a":-0.0})";
  auto v = Parse(text);
  ASSERT_TRUE(v) << v.error().message;
  EXPECT_EQ((*v)["valueQuantity"]["value"].number_text(), "1.50");
  EXPECT_EQ((*v)["b"].number_text(), "12345678901234567890.123456789012");
  EXPECT_EQ(Serialize(*v), text);
  EXPECT_EQ(v->object()[1].key, "valueQuantity");
}

TEST(JsonTest, RoundTripsEscapesAndUnicode) {
  const std::string text = R"({"s":"line\nbreak \"q\" \\ \u0001 é 中文 😀"})";
  auto v = Parse(text);
  ASSERT_TRUE(v);
  EXPECT_EQ((*v)["s"].str(), "line\nbreak \"q\" \\ \x01 é 中文 😀");
  auto again = Parse(Serialize(*v));
  ASSERT_TRUE(again);
  EXPECT_EQ(*again, *v);
}

TEST(JsonTest, RejectsWhatFhirJsonForbids) {
  struct Case {
    const char* text;
    const char* fragment;
  };
  const Case cases[] = {
      {R"({"a":1,})", "line 1"},
      {R"({"a":1 // c
})",
       "line 1"},
      {R"({a:1})", "Missing a name"},
      {R"({"a":1,"a":2})", "duplicate property name \"a\""},
      {R"({"a":1} {"b":2})", "root"},
      {"", "empty input"},
      {"{\"a\":\"\xff\"}", "encoding"},
      {"{\n\"a\": [1,\n 2,\n}", "line 4"},
  };
  for (const Case& c : cases) {
    auto v = Parse(c.text);
    ASSERT_FALSE(v) << c.text;
    EXPECT_TRUE(v.error().is(Errc::kParseError));
    EXPECT_NE(v.error().message.find(c.fragment), std::string::npos)
        << c.text << " -> " << v.error().message;
  }
}

TEST(JsonTest, ReportsLineAndColumn) {
  ParseErrorInfo info;
  auto v = Parse("{\n  \"a\": 1,\n  \"b\": tru\n}", {}, &info);
  ASSERT_FALSE(v);
  EXPECT_EQ(info.line, 3u);
  EXPECT_GE(info.column, 8u);
}

TEST(JsonTest, LimitsDepthInsteadOfOverflowingTheStack) {
  std::string deep(100000, '[');
  auto v = Parse(deep);
  ASSERT_FALSE(v);
  EXPECT_NE(v.error().message.find("nesting deeper"), std::string::npos);
  std::string ok = std::string(50, '[') + std::string(50, ']');
  EXPECT_TRUE(Parse(ok));
}

TEST(JsonTest, AcceptsBomAndSurroundingWhitespace) {
  auto v = Parse("\xEF\xBB\xBF  {\"a\":true}\r\n");
  ASSERT_TRUE(v);
  EXPECT_TRUE((*v)["a"].as_bool());
}

TEST(JsonTest, MutationKeepsPositionAndOtherMembers) {
  auto v = Parse(R"({"x":1,"y":{"z":[1,2]},"w":null})");
  ASSERT_TRUE(v);
  v->set("y", Value::String("new"));
  v->set("v", Value::Bool(false));
  EXPECT_TRUE(v->erase("w"));
  EXPECT_FALSE(v->erase("nope"));
  EXPECT_EQ(Serialize(*v), R"({"x":1,"y":"new","v":false})");
}

TEST(JsonTest, NumberGrammar) {
  for (const char* good :
       {"0", "-0", "1.50", "1e5", "1E+5", "-1.0e-10", "123456789012345678901234567890"}) {
    EXPECT_TRUE(IsJsonNumber(good)) << good;
  }
  for (const char* bad : {"", "01", "1.", ".5", "+1", "1e", "NaN", "0x10", "1 "}) {
    EXPECT_FALSE(IsJsonNumber(bad)) << bad;
  }
  EXPECT_TRUE(Value::Number("bad").is_null());
}

TEST(JsonTest, EquivalentIgnoresMemberOrderOnly) {
  auto a = Parse(R"({"a":1,"b":[1,2]})");
  auto b = Parse(R"({"b":[1,2],"a":1})");
  auto c = Parse(R"({"b":[2,1],"a":1})");
  auto d = Parse(R"({"b":[1,2],"a":1.0})");
  EXPECT_FALSE(*a == *b);
  EXPECT_TRUE(a->Equivalent(*b));
  EXPECT_FALSE(a->Equivalent(*c));
  EXPECT_FALSE(a->Equivalent(*d));
}

TEST(JsonTest, ProjectionKeepsOnlyChosenTopLevelMembers) {
  ParseOptions options;
  std::vector<std::pair<std::string, std::string>> asked;
  options.keep_member = [&](std::string_view type, std::string_view name) {
    asked.emplace_back(type, name);
    return name == "status" || name == "period";
  };
  const char* text =
      R"({"resourceType":"Encounter","id":"e1","text":{"div":"<div>x</div>","n":[1,{"a":[]}]},)"
      R"("status":"finished","extension":[{"url":"u","valueDecimal":1.50}],"period":{"start":"2026"},)"
      R"("x":null,"y":true,"z":2.5})";
  auto v = Parse(text, options);
  ASSERT_TRUE(v) << v.error().message;
  EXPECT_EQ(Serialize(*v),
            R"({"resourceType":"Encounter","status":"finished","period":{"start":"2026"}})");
  ASSERT_FALSE(asked.empty());
  EXPECT_EQ(asked.front(), (std::pair<std::string, std::string>{"Encounter", "id"}));
  // Names inside skipped members are never offered (only top-level ones).
  for (const auto& [type, name] : asked) EXPECT_NE(name, "div");
  EXPECT_EQ(asked.size(), 8u);

  // Skipped members are still checked for well-formed JSON.
  ParseErrorInfo info;
  EXPECT_FALSE(Parse(R"({"resourceType":"Encounter","text":{"div":[1,}})", options, &info));
  EXPECT_EQ(info.column, 46u);  // the "}" after "1,"

  // Before "resourceType" arrives the type is unknown and the callback sees "".
  asked.clear();
  auto late = Parse(R"({"status":"x","resourceType":"Patient","id":"p"})", options);
  ASSERT_TRUE(late);
  EXPECT_EQ(Serialize(*late), R"({"status":"x","resourceType":"Patient"})");
  EXPECT_EQ(asked.front().first, "");
  EXPECT_EQ(asked.back().first, "Patient");
}

TEST(JsonTest, RejectsMalformedUtf8WithItsPosition) {
  EXPECT_EQ(FindInvalidUtf8("plain ascii, long enough for the fast path"), std::string_view::npos);
  EXPECT_EQ(FindInvalidUtf8("caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80"), std::string_view::npos);
  EXPECT_EQ(FindInvalidUtf8("abc\xC0\xAF"), 3u);              // overlong '/'
  EXPECT_EQ(FindInvalidUtf8("abcdefghij\xED\xA0\x80"), 10u);  // a surrogate
  EXPECT_EQ(FindInvalidUtf8("\xF4\x90\x80\x80"), 0u);         // above U+10FFFF
  EXPECT_EQ(FindInvalidUtf8("ab\xE2\x82"), 2u);               // truncated
  ParseErrorInfo info;
  EXPECT_FALSE(Parse("{\"a\":\"x\xFFy\"}", {}, &info));
  EXPECT_EQ(info.column, 8u);
  EXPECT_NE(info.message.find("UTF-8"), std::string::npos);
}

TEST(JsonTest, InsituErrorsPointIntoTheTextAsGiven) {
  // The escaped "\n"s are decoded into the buffer before the error: positions must not count them.
  std::string text = R"({"a":"x\ny\nz","b":[1,}})";
  std::string expected_at = Parse(text).error().message;
  text.reserve(text.size() + kInsituPadding);
  ParseErrorInfo info;
  auto v = ParseInsitu(text.data(), text.size(), {}, &info);
  ASSERT_FALSE(v);
  EXPECT_EQ(info.line, 1u);
  EXPECT_EQ(info.column, 23u);
  EXPECT_EQ(v.error().message, expected_at);
  // Real line breaks still count.
  std::string pretty = "{\n  \"a\": \"x\\ny\",\n  \"b\": [1,}\n}";
  std::string pretty_expected = Parse(pretty).error().message;
  pretty.reserve(pretty.size() + kInsituPadding);
  EXPECT_EQ(ParseInsitu(pretty.data(), pretty.size(), {}, &info).error().message, pretty_expected);
  EXPECT_EQ(info.line, 3u);
}

}  // namespace
}  // namespace ccm::fhir::json
