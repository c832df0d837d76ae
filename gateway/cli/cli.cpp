#include "gateway/cli/cli.h"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <exception>
#include <span>
#include <string>
#include <system_error>
#include <vector>

#include <fmt/format.h>

#include "gateway/cli/cli_common.h"

namespace ccm::gateway::cli {
namespace {

// Optimal string alignment distance (Levenshtein with adjacent transpositions): "--inptu" is one
// edit from "--input".
std::size_t EditDistance(std::string_view a, std::string_view b) {
  std::vector<std::vector<std::size_t>> d(a.size() + 1, std::vector<std::size_t>(b.size() + 1));
  for (std::size_t i = 0; i <= a.size(); ++i) d[i][0] = i;
  for (std::size_t j = 0; j <= b.size(); ++j) d[0][j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    for (std::size_t j = 1; j <= b.size(); ++j) {
      std::size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
      d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost});
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1]) {
        d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
      }
    }
  }
  return d[a.size()][b.size()];
}

// "; did you mean X?" for the candidate closest to `word` -- within a third of its length in
// edits, or the only one it is a prefix of -- else "".
std::string Suggest(std::string_view word, const std::vector<std::string>& candidates) {
  std::string best;
  std::size_t best_distance = std::max<std::size_t>(1, word.size() / 3) + 1;
  std::vector<std::string> prefixed;
  for (const std::string& c : candidates) {
    if (word.size() >= 3 && c.starts_with(word)) prefixed.push_back(c);
    std::size_t d = EditDistance(word, c);
    if (d < best_distance) {
      best = c;
      best_distance = d;
    }
  }
  if (best.empty() && prefixed.size() == 1) best = prefixed.front();
  return best.empty() ? "" : fmt::format("; did you mean {}?", best);
}

std::string Overview(const std::vector<std::unique_ptr<Command>>& commands) {
  std::string out =
      "usage: ccm-gateway <command> [options]\n"
      "       ccm-gateway help <command>   (or <command> --help): its options and examples\n"
      "\ncommands:\n";
  for (const auto& c : commands) {
    out += c->synopsis().empty()
               ? fmt::format("  {}\n", c->name())
               : fmt::format("  {:<8} {}\n", c->name(), Wrap(c->synopsis(), 11, 100));
    out += fmt::format("{:11}{}\n", "", Wrap(c->description(), 11, 100));
  }
  out +=
      "  help     [COMMAND]\n"
      "           Print this text, or a command's options and examples.\n"
      "\nevery command takes --quiet (only warnings and errors on stderr) and --verbose.\n"
      "exit status: 0 ok, 1 input problems (see the issues printed), 2 usage error, 3 fatal "
      "error.\n";
  return out;
}

std::vector<std::string> CommandNames(const std::vector<std::unique_ptr<Command>>& commands) {
  std::vector<std::string> names = {"help"};
  for (const auto& c : commands) names.push_back(c->name());
  names.emplace_back("config");
  return names;
}

// The command `words` name ("evaluate", or "config check"), and how many words that took; nullptr
// with the error printed when there is none such.
Command* FindCommand(const std::vector<std::unique_ptr<Command>>& commands,
                     std::span<const std::string> words, std::size_t& used, std::string_view who) {
  std::string name = words.empty() ? "" : words[0];
  used = 1;
  if (name == "config") {
    // A group of one for now; `ccm-gateway config` alone says what is in it.
    if (words.size() < 2 || words[1].starts_with("-")) {
      fmt::print(stderr, "{}: `config` needs a subcommand: config check --config FILE\n", who);
      return nullptr;
    }
    name = "config " + words[1];
    used = 2;
  }
  for (const auto& c : commands) {
    if (c->name() == name) return c.get();
  }
  fmt::print(stderr, "{}: unknown command \"{}\"{}\n\n{}", who, name,
             Suggest(name, CommandNames(commands)), Overview(commands));
  return nullptr;
}

// A CLI11 parse error in the words of this command line.
std::string Explain(const CLI::ParseError& e) {
  std::string what = e.what();
  if (e.get_name() == "ArgumentMismatch") {
    std::string option = what.substr(0, what.find(':'));
    if (what.find("At Most") != std::string::npos) return option + " given twice";
    if (what.find("missing") != std::string::npos) return option + " needs a value";
  }
  return what;
}

int Dispatch(std::vector<std::string> args, std::string& command_name) {
  auto commands = MakeCommands();
  if (args[0] == "--version") args[0] = "version";
  if (args[0] == "--help" || args[0] == "-h" || (args[0] == "help" && args.size() == 1)) {
    fmt::print("{}", Overview(commands));
    return kExitOk;
  }
  std::size_t used = 0;
  if (args[0] == "help") {
    Command* c = FindCommand(commands, std::span(args).subspan(1), used, "ccm-gateway help");
    if (c == nullptr) return kExitUsage;
    fmt::print("{}", c->app().help());
    return kExitOk;
  }
  Command* command = FindCommand(commands, args, used, "ccm-gateway");
  if (command == nullptr) return kExitUsage;
  command_name = command->name();
  CLI::App& app = command->app();
  try {
    // (CLI11 takes the words in reverse order.)
    std::vector<std::string> rest(args.rbegin(), args.rend() - static_cast<std::ptrdiff_t>(used));
    app.parse(rest);
    if (std::vector<std::string> extra = app.remaining(); !extra.empty()) {
      if (!extra.front().starts_with("-")) {
        throw UsageError(fmt::format("unexpected argument \"{}\"", extra.front()));
      }
      std::vector<std::string> names;
      for (const CLI::Option* o : app.get_options()) {
        for (const std::string& n : o->get_lnames()) names.push_back("--" + n);
      }
      std::string option = extra.front().substr(0, extra.front().find('='));
      throw UsageError(fmt::format("unknown option {}{}", option, Suggest(option, names)));
    }
    command->CheckRequired();
  } catch (const CLI::CallForHelp&) {
    fmt::print("{}", app.help());
    return kExitOk;
  } catch (const CLI::ParseError& e) {
    throw UsageError(Explain(e));
  }
  Console console(command->name(), command->verbosity());
  return command->Run(console);
}

int RunGuarded(std::vector<std::string> args, std::string& command) {
  try {
    return Dispatch(std::move(args), command);
  } catch (const UsageError& e) {
    fmt::print(stderr, "ccm-gateway {}: {}\nrun `ccm-gateway help {}` for usage\n", command,
               e.what(), command);
    return kExitUsage;
  } catch (const std::system_error& e) {
    // fmt::print throws this when stdout cannot be written (a full disk, a closed pipe).
    if (std::ferror(stdout) != 0) {
      fmt::print(stderr, "ccm-gateway {}: cannot write to stdout: {}\n", command,
                 e.code().message());
    } else {
      fmt::print(stderr, "ccm-gateway {}: {}\n", command, e.what());
    }
    return kExitFatal;
  } catch (const std::exception& e) {
    // The process boundary: anything unexpected is reported, never a crash.
    fmt::print(stderr, "ccm-gateway {}: internal error: {}\n", command, e.what());
    return kExitFatal;
  }
}

}  // namespace
}  // namespace ccm::gateway::cli

namespace ccm::gateway {

int RunCli(int argc, char** argv) {
  std::vector<std::string> args(argv + std::min(argc, 1), argv + argc);
  if (args.empty()) {
    try {
      fmt::print(stderr, "{}", cli::Overview(cli::MakeCommands()));
    } catch (...) {
    }
    return cli::kExitUsage;
  }
  std::string command = args[0];
  int status = cli::kExitFatal;
  try {
    status = cli::RunGuarded(std::move(args), command);
  } catch (...) {
    return cli::kExitFatal;  // even the error could not be written (stderr is full or closed)
  }
  // What is still buffered for stdout is written now, not at exit, where a failure (a full
  // disk: `> /dev/full`) would go unnoticed and the exit status would claim success.
  errno = 0;
  bool flushed = std::fflush(stdout) == 0;
  int err = errno;
  if ((!flushed || std::ferror(stdout) != 0) && status != cli::kExitFatal) {  // (fatal: said)
    // (std::fputs: if stderr cannot be written either, there is no one left to tell.)
    std::fputs(fmt::format("ccm-gateway {}: cannot write to stdout: {}\n", command,
                           !flushed && err != 0 ? std::strerror(err) : "an earlier write failed")
                   .c_str(),
               stderr);
    return cli::kExitFatal;
  }
  return status;
}

}  // namespace ccm::gateway
